"""The Redis client behind the Store: connecting (plain, TLS, Sentinel),
key names under the namespace, the scripts (loaded once) and `_do`, the one
place a redis error becomes farm's own (its cause kept)."""

from importlib.resources import files

import redis
import redis.sentinel
from redis.backoff import NoBackoff
from redis.retry import Retry

from farm.coordination import backend
from farm.errors import BackendRefused, BackendUnavailable, ConfigError

EVENTS_MAXLEN = 100_000
# Lua scripts, one file each in lua/, loaded once; every key through KEYS
SCRIPT_NAMES = ("write_results", "hold_lease", "release_lease", "publish", "write_sensors",
                "write_sel", "set_control", "remove_nodes", "recount", "report_worker",
                "append_owned_event", "create_action", "claim_steps", "finish_step",
                "cancel_action", "take_slots", "finish_create")
SCRIPTS = {name: (files("farm.store.lua") / f"{name}.lua").read_text() for name in SCRIPT_NAMES}


def client(module, b, socket_timeout, retry=Retry):
    """A client of redis-py's `module` (redis, or redis.asyncio with its own
    Retry) for the parsed backend URL `b`: plain, TLS or through Sentinel."""
    timeouts = {"socket_timeout": socket_timeout,
                "socket_connect_timeout": min(socket_timeout, 3.0),
                # redis-py 6+ retries a failed call 10 times with backoff: through
                # a blackholed Redis one call then blocks about a minute. Retry
                # once on a broken connection (a restarted Redis), never on a
                # timeout: the daemons' loops retry with their own backoff.
                "retry": retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,))}
    try:
        if b.sentinel:
            sentinels = module.sentinel.Sentinel(
                list(b.sentinels), sentinel_kwargs=dict(timeouts, password=b.sentinel_password),
                **timeouts, health_check_interval=30, decode_responses=True, **b.redis_kwargs())
            return sentinels.master_for(b.sentinel)
        return module.Redis(**timeouts, health_check_interval=30, decode_responses=True,
                            **b.redis_kwargs())
    except (ValueError, TypeError) as exc:
        # from None: the cause's traceback would show redis-py's arguments, password included
        raise ConfigError(f"backend URL {b.where}: {exc}") from None


def translated(where, what, exc):
    """farm's own error for a redis-py error `exc` during `what`."""
    if isinstance(exc, (redis.AuthenticationError, redis.exceptions.NoPermissionError)):
        return BackendRefused(
            f"Redis at {where} refused farm during {what} (check the user, password "
            f"and ACL in backend_url): {type(exc).__name__}: {backend.redact(str(exc))}")
    return BackendUnavailable(f"Redis at {where} failed during {what}: "
                              f"{type(exc).__name__}: {backend.redact(str(exc))}")


class Connection:
    def __init__(self, url, namespace, socket_timeout=5.0, credentials=None,
                 events_max_len=EVENTS_MAXLEN, sel_recent=20):
        """`url`: [coordination] backend_url (see farm.coordination.backend); a URL that is
        not one raises ConfigError. `credentials` (farm.credentials) seals
        and opens BMC passwords; without it they are stored as given."""
        self.namespace = namespace
        self.credentials = credentials
        self.events_max_len = events_max_len
        self.sel_recent = sel_recent
        b = backend.parse(url)
        self._where = b.where
        self._redis = client(redis, b, socket_timeout)
        self._scripts = {name: self._redis.register_script(SCRIPTS[name]) for name in SCRIPT_NAMES}

    def _key(self, *parts):
        return ":".join((self.namespace,) + parts)

    def _do(self, what, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except redis.RedisError as exc:
            raise translated(self._where, what, exc) from exc

    def ping(self):
        return self._do("ping", self._redis.ping)

    def close(self):
        self._redis.close()

    def server_time(self):
        """Redis's clock (epoch seconds): the one clock every farm process shares."""
        sec, usec = self._do("time", self._redis.time)
        return sec + usec / 1e6
