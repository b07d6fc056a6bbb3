"""The Redfish executor a worker (threads) or each poll process (processes)
builds from one picklable RedfishConfig: the asyncio engine with the thread
pool for actions, or the thread pool alone ([redfish] engine).

A poll process keeps the farm's one session per BMC as the worker does:
with a key file it opens its own Store (`store`: the Redis URL, namespace
and key file, handed over the spawn pipe, never argv) to read and save the
sealed tokens; without one, sessions stay in the process."""

import dataclasses

from farm.tasks import load_tasks, redfish_programs


@dataclasses.dataclass(frozen=True)
class RedfishConfig:
    engine: str = "asyncio"
    pool_size: int = 64
    timeout: float = 5.0
    timeouts: tuple = ()
    keep_alive: bool = True
    max_answer_bytes: int = 4 * 2**20
    max_members: int = 1000
    sensor_gets: int = 4
    per_bmc: int = 1
    login_timeout: float = 30.0
    # (backend_url, namespace, key file, allow plaintext): a poll process's Store
    store: tuple | None = dataclasses.field(default=None, repr=False)


def child_sessions(config):
    """SharedSessions for a poll process (farm.polling.executors)."""
    from farm.polling.redfish_pool import SharedSessions
    if config.store is None or not config.store[2]:
        return SharedSessions(None)  # no key file: tokens are not kept in Redis
    from farm.credentials import Credentials
    from farm.store import Store
    url, namespace, key_file, plaintext = config.store
    return SharedSessions(Store(url, namespace, credentials=Credentials(key_file, plaintext)))


def build(config, on_results, sessions):
    """The Redfish executor (start/submit/stats_dict/retain/in_flight/stop)."""
    from farm.polling.redfish_pool import RedfishPool  # sushy: poll processes only
    programs = redfish_programs(load_tasks().values())
    pool = RedfishPool(config.pool_size, config.timeout, programs, on_results,
                       timeouts=config.timeouts, keep_alive=config.keep_alive,
                       max_answer_bytes=config.max_answer_bytes, max_members=config.max_members,
                       sensor_gets=config.sensor_gets, sessions=sessions, per_bmc=config.per_bmc)
    if config.engine != "asyncio":
        return pool
    from farm.polling.redfish_loop import RedfishLoop
    return RedfishLoop(config.timeout, programs, on_results, actions=pool,
                       timeouts=config.timeouts, sessions=sessions, per_bmc=config.per_bmc,
                       max_answer_bytes=config.max_answer_bytes, max_members=config.max_members,
                       sensor_gets=config.sensor_gets, login_timeout=config.login_timeout,
                       keep_alive=config.keep_alive)
