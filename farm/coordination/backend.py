"""The Redis URL: parsed once, redacted always, the same for redis-py and tooz.

Operators write one `[coordination] backend_url`; farm's state (redis-py)
and tooz's Redis driver must reach the same server with the same
credentials and TLS. The two libraries read URLs differently (redis-py
percent-decodes the password and knows `rediss://`; tooz's driver takes the
password raw and knows only `redis://` with `?ssl=true`), so farm parses the
URL itself into a `Backend` and hands each library keyword arguments.

Accepted (one form each for TLS and Sentinel, both spellings of TLS):
  redis://[user[:password]@]host[:port][/db][?option=value...]
  rediss://...                      TLS (same as ?ssl=true)
  ...?ssl_ca_certs=FILE&ssl_certfile=FILE&ssl_keyfile=FILE
  redis://sentinel-host:26379?sentinel=MASTER&sentinel_fallback=host:port...
A password may be percent-encoded (`p%40ss`) or not: everything between
`://` and the last `@` is the user part, whatever characters it holds.
This module never imports redis or tooz; `redact` never needs the URL to parse.
"""

import dataclasses
import re
import urllib.parse

from farm.errors import ConfigError

TLS_OPTIONS = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile")
TOOZ_OPTIONS = ("timeout", "membership_timeout", "lock_timeout", "namespace", "heartbeat_interval")
_OTHER_OPTIONS = ("ssl", "sentinel", "sentinel_fallback", "sentinel_password", "sentinel_username",
                  "db", "password", "username")
_SECRET_QUERY = re.compile(r"((?:^|[?&;])(?:sentinel_)?password=)[^&;#]*", re.I)


def redact(text):
    """`text` (a URL, or a message quoting one) with every password replaced
    by ***; never depends on the URL being well formed."""
    text = str(text)
    whole = re.match(r"^\s*[a-zA-Z][a-zA-Z0-9+.-]*://", text)
    if whole and "@" in text:  # a URL alone: its user part runs to its last @
        head, tail = text[whole.end():].rsplit("@", 1)
        user = head.split(":", 1)[0] + ":***" if ":" in head else "***"
        return _SECRET_QUERY.sub(r"\1***", f"{text[:whole.end()]}{user}@{tail}")

    def userinfo(m):
        user = m.group(2)
        if ":" in user:
            return f"{m.group(1)}{user.split(':', 1)[0]}:***@"
        return f"{m.group(1)}***@"
    # the user part runs to the last @ before whitespace or a quote
    text = re.sub(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://)([^\s'\"]*)@(?=[^@\s'\"]*(?:[\s'\"]|$))",
                  userinfo, text)
    return _SECRET_QUERY.sub(r"\1***", text)


@dataclasses.dataclass(frozen=True)
class Backend:
    host: str
    port: int
    username: str | None = None
    password: str | None = dataclasses.field(default=None, repr=False)
    db: int = 0
    tls: bool = False
    tls_files: tuple = ()  # ((option, path), ...) of TLS_OPTIONS
    sentinel: str | None = None  # the master's name; host:port is then a Sentinel
    sentinel_fallback: tuple = ()  # more Sentinels, ((host, port), ...)
    sentinel_password: str | None = dataclasses.field(default=None, repr=False)
    tooz: tuple = ()  # ((option, value), ...) of TOOZ_OPTIONS given in the URL
    where: str = ""  # the URL, redacted, for messages

    @property
    def sentinels(self):
        return ((self.host, self.port),) + self.sentinel_fallback

    def redis_kwargs(self):
        """Keyword arguments for redis.Redis (or Sentinel's master_for)."""
        kw = {"username": self.username, "password": self.password, "db": self.db}
        if self.tls:
            kw["ssl"] = True
            kw.update(dict(self.tls_files))
        if self.sentinel is None:
            kw.update(host=self.host, port=self.port)
        return kw

    def tooz_options(self):
        """The options tooz's Redis driver reads from its URL's query."""
        opts = dict(self.tooz)
        if self.db:
            opts["db"] = str(self.db)
        if self.tls:
            opts["ssl"] = "true"
            opts.update(dict(self.tls_files))
        if self.sentinel:
            opts["sentinel"] = self.sentinel
            opts["sentinel_fallback"] = [f"{h}:{p}" for h, p in self.sentinel_fallback]
            if self.sentinel_password:
                opts["sentinel_password"] = self.sentinel_password
        return opts


def parse(url):
    """A Backend from an operator's URL; ConfigError (redacted) if it is not one."""
    where = redact(url)
    m = re.match(r"^(redis|rediss)://(.*)$", url.strip(), re.S)
    if not m:
        raise ConfigError(f"backend URL {where}: expected redis://... or rediss://...")
    scheme, rest = m.groups()
    username = password = None
    if "@" in rest:
        userinfo, rest = rest.rsplit("@", 1)
        user, sep, secret = userinfo.partition(":")
        username = urllib.parse.unquote(user) or None
        password = urllib.parse.unquote(secret) if sep else None
        if not sep and user:  # redis://secret@host: a password alone, as redis-py reads it
            username, password = None, urllib.parse.unquote(user)
    hostport, tail = _split_authority(rest)
    host, port = _host_port(hostport, where)
    path, _, query = tail.partition("?")
    query = query.split("#", 1)[0]
    options = urllib.parse.parse_qs(query, keep_blank_values=True)
    unknown = set(options) - set(TLS_OPTIONS) - set(TOOZ_OPTIONS) - set(_OTHER_OPTIONS)
    if unknown:
        raise ConfigError(f"backend URL {where}: unknown option(s) {', '.join(sorted(unknown))}")
    one = {k: v[-1] for k, v in options.items()}
    db_text = path.strip("/") or one.get("db", "0")
    try:
        db = int(db_text)
    except ValueError:
        raise ConfigError(f"backend URL {where}: database {db_text!r} is not a number") from None
    tls = scheme == "rediss" or one.get("ssl", "").lower() in ("1", "true", "yes", "on")
    tls_files = tuple((k, one[k]) for k in TLS_OPTIONS if one.get(k))
    if tls_files and not tls:
        raise ConfigError(f"backend URL {where}: {tls_files[0][0]} without rediss:// or ssl=true")
    fallback = tuple(_host_port(hp, where, default=26379) for hp in options.get("sentinel_fallback", ()))
    return Backend(host=host, port=port, username=one.get("username", username),
                   password=one.get("password", password), db=db, tls=tls, tls_files=tls_files,
                   sentinel=one.get("sentinel") or None, sentinel_fallback=fallback,
                   sentinel_password=one.get("sentinel_password"),
                   tooz=tuple((k, one[k]) for k in TOOZ_OPTIONS if k in one), where=where)


def _split_authority(rest):
    """host[:port] and what follows it (path, query)."""
    m = re.search(r"[/?#]", rest)
    return (rest, "") if not m else (rest[:m.start()], rest[m.start():])


def _host_port(text, where, default=6379):
    m = re.match(r"^(?:\[([0-9a-fA-F:.]+)\]|([^:\[\]]+))(?::(\d{1,5}))?$", text)
    if not m:
        raise ConfigError(f"backend URL {where}: cannot read host[:port] from {text!r}")
    port = int(m.group(3) or default)
    if not 0 < port < 65536:
        raise ConfigError(f"backend URL {where}: port {port} out of range")
    return m.group(1) or m.group(2), port
