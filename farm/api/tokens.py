"""Bearer tokens for farm-api: a file of lines `sha256:<hex digest of the
token> <role> <name>`, role `reader` (GET only) or `operator` (may act).
The file holds digests, never tokens; `add` prints a new token once. A file
that group or others may read is refused, as ssh refuses a private key."""

import hashlib
import hmac
import os
import re
import secrets
import stat

from farm.errors import ConfigError

ROLES = ("reader", "operator")
LINE = re.compile(r"sha256:([0-9a-f]{64})\s+(reader|operator)\s+([A-Za-z0-9_.@:-]{1,64})")
NAME = re.compile(r"[A-Za-z0-9_.@:-]{1,64}")


def digest(token):
    return hashlib.sha256(token.encode()).hexdigest()


class Tokens:
    def __init__(self, entries):
        self.entries = entries  # [(digest, role, name)]

    @classmethod
    def load(cls, path):
        """The tokens of `path`, or ConfigError naming the file and line."""
        try:
            mode = os.stat(path).st_mode
        except OSError as exc:
            raise ConfigError(f"[api] tokens_file {path}: {exc.strerror}") from None
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigError(f"[api] tokens_file {path}: group or others may read or write it "
                              f"(mode {stat.S_IMODE(mode):04o}); chmod 600 it")
        entries = []
        with open(path, encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                match = LINE.fullmatch(line)
                if not match:
                    raise ConfigError(f"[api] tokens_file {path} line {number}: expected "
                                      f"`sha256:<64 hex digits> reader|operator <name>`")
                entries.append(match.groups())
        return cls(entries)

    def check(self, token):
        """(role, name) of a presented token, or None. Every entry is
        compared, in constant time each."""
        found, presented = None, digest(token)
        for known, role, name in self.entries:
            if hmac.compare_digest(known, presented):
                found = (role, name)
        return found


def add(path, role, name):
    """Append a new token's line to `path` (created mode 0600) and return
    the token, which is nowhere else."""
    if role not in ROLES:
        raise ConfigError(f"role must be one of {', '.join(ROLES)}")
    if not NAME.fullmatch(name):
        raise ConfigError("name: 1-64 of letters, digits and _.@:-")
    if os.path.exists(path):
        Tokens.load(path)  # refuse to add to a file that is readable by others or malformed
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with os.fdopen(fd, "a", encoding="utf-8") as f:
        f.write(f"sha256:{digest(token)} {role} {name}\n")
    return token
