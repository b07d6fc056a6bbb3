"""BMC passwords at rest: sealed in Redis with a key Redis never sees.

Fernet (from `cryptography`: AES-128-CBC with HMAC-SHA256, a timestamp and
a random IV) seals each password with the first key of the key file named
by `[security] credentials_key_file`; every key in the file opens. So a key
rotates without a polling gap: put the new key first in every host's file
(the old one after it), run `farm keys rotate`, then drop the old key.
A worker re-reads its key file when a password does not open, so it picks
up the new file without a restart.

An inventory entry may name `password_file` instead: a file on the worker
hosts, read by the worker; then the password is never in Redis at all.
"""

import logging
import os

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from farm.errors import ConfigError, CredentialsError

LOG = logging.getLogger(__name__)


def generate_key_file(path):
    """Write a new key to `path` (mode 0600); never overwrites a file."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(Fernet.generate_key() + b"\n")


def read_keys(path):
    """The keys in a key file, first one first; ConfigError if unusable."""
    try:
        with open(path, "rb") as f:
            lines = [line.strip() for line in f if line.strip() and not line.startswith(b"#")]
        keys = [Fernet(line) for line in lines]
    except OSError as exc:
        raise ConfigError(f"credentials key file {path}: {exc.strerror}") from None
    except ValueError:
        raise ConfigError(f"credentials key file {path}: not Fernet keys "
                          f"(make one with `farm keys generate FILE`)") from None
    if not keys:
        raise ConfigError(f"credentials key file {path} holds no key")
    return keys


class Credentials:
    """Seals passwords for Redis and opens what Redis holds."""

    def __init__(self, key_file="", allow_plaintext=False):
        self.key_file = key_file
        self.allow_plaintext = allow_plaintext
        self._keys = read_keys(key_file) if key_file else []

    @classmethod
    def from_settings(cls, security):
        return cls(security.credentials_key_file, security.allow_plaintext_credentials)

    def check_can_store(self):
        """ConfigError now if passwords could only be stored in clear and that is not allowed."""
        if not self._keys and not self.allow_plaintext:
            self.seal("")

    def seal(self, password, field="password"):
        """The fields that stand for `password` (or another secret `field`:
        a BMC's K_g key) in Redis."""
        if self._keys:
            return {f"{field}_sealed": self._keys[0].encrypt(password.encode("utf-8")).decode("ascii")}
        if self.allow_plaintext:
            return {field: password}
        raise ConfigError("no [security] credentials_key_file: farm will not store BMC passwords "
                          "in clear in Redis (make a key with `farm keys generate FILE`, or set "
                          "[security] allow_plaintext_credentials = true for a test farm)")

    @property
    def sealing(self):
        """Whether secrets can be sealed (a key file): Redfish session
        tokens are kept in Redis only then, never in clear."""
        return bool(self._keys)

    def seal_text(self, text):
        """`text` sealed with the first key (ConfigError without a key)."""
        if not self._keys:
            raise ConfigError("no [security] credentials_key_file to seal with")
        return self._keys[0].encrypt(text.encode("utf-8")).decode("ascii")

    def open_text(self, sealed, name, what):
        """What seal_text sealed (CredentialsError if no key opens it)."""
        return self._open_sealed(sealed, name, what)

    def open_kg(self, fields, name):
        """The K_g key (hex) the stored `fields` stand for, or ''."""
        if "kg_sealed" in fields:
            return self._open_sealed(fields["kg_sealed"], name, "K_g key")
        return fields.get("kg", "")

    def open(self, fields, name):
        """The password the stored `fields` stand for (CredentialsError if not)."""
        if "password_sealed" in fields:
            return self._open_sealed(fields["password_sealed"], name, "password")
        if "password_file" in fields:
            try:
                with open(fields["password_file"], encoding="utf-8") as f:
                    return f.readline().rstrip("\n")
            except OSError as exc:
                raise CredentialsError(f"node {name}: password_file {fields['password_file']}: "
                                       f"{exc.strerror}") from None
        return fields.get("password", "")

    def _open_sealed(self, sealed, name, what):
        token = sealed.encode("ascii")
        try:
            return self._open(token)
        except InvalidToken:
            if self.key_file:  # a rotation may have put a new key in the file
                self._keys = read_keys(self.key_file)
                try:
                    return self._open(token)
                except InvalidToken:
                    pass
            if not self.key_file:
                raise CredentialsError(f"node {name}: its {what} is sealed and no "
                                       f"[security] credentials_key_file is set") from None
            raise CredentialsError(f"node {name}: its {what} is sealed with a key "
                                   f"not in {self.key_file}") from None

    def _open(self, token):
        if not self._keys:
            raise InvalidToken
        return MultiFernet(self._keys).decrypt(token).decode("utf-8")

    def reseal(self, fields, name, new_keys):
        """`fields` sealed under new_keys[0] (plaintext and sealed alike): the
        password (unless read from a password_file) and any K_g key."""
        out = dict(fields)
        secrets = {}
        if "password_file" not in fields:
            secrets["password"] = self.open(fields, name)
        kg = self.open_kg(fields, name)
        if kg:
            secrets["kg"] = kg
        for field, value in secrets.items():
            out.pop(field, None)
            out[f"{field}_sealed"] = new_keys[0].encrypt(value.encode("utf-8")).decode("ascii")
        return out
