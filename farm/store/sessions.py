"""Redfish session tokens, one per BMC for the whole farm: kept with the
node so a worker that restarts or takes the node over reuses the session
instead of opening another (a BMC keeps a few: iDRAC 8). Sealed with the
credentials key as passwords are, never in clear: without a key file none
is kept (each worker then holds its own, as before).

  {ns}:redfish-sessions  hash  node name -> Fernet(JSON {"token", "uri"})
"""

import json
import logging

from farm.errors import CredentialsError

LOG = logging.getLogger(__name__)


class Sessions:
    def redfish_session(self, name):
        """(token, session URI) farm holds on the node's BMC, or None."""
        if self.credentials is None or not self.credentials.sealing:
            return None
        sealed = self._do("session read", self._redis.hget, self._key("redfish-sessions"), name)
        if not sealed:
            return None
        try:
            doc = json.loads(self.credentials.open_text(sealed, name, "Redfish session"))
            return str(doc["token"]), doc.get("uri")
        except (CredentialsError, ValueError, KeyError, TypeError) as exc:
            LOG.warning("node %s: its stored Redfish session cannot be used (%s); "
                        "logging in anew", name, exc)
            return None

    def save_redfish_session(self, name, token, uri):
        """Keep the node's session for every worker; False when there is no
        key to seal it with (it is then kept nowhere)."""
        if self.credentials is None or not self.credentials.sealing or not token:
            return False
        sealed = self.credentials.seal_text(json.dumps({"token": token, "uri": uri}))
        self._do("session write", self._redis.hset, self._key("redfish-sessions"), name, sealed)
        return True

    def forget_redfish_session(self, name):
        """Remove the node's session from Redis; what it was (or None)."""
        held = self.redfish_session(name)
        self._do("session removal", self._redis.hdel, self._key("redfish-sessions"), name)
        return held
