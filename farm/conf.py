"""Every farm configuration option, and the one place that reads them.

Options are read once at the edge (a CLI) into plain frozen values; nothing reads
configuration at import time. `list_opts` feeds oslo-config-generator.
"""

import dataclasses
import os

from oslo_config import cfg

from farm import errors

coordination_opts = [
    cfg.StrOpt("backend_url", default="redis://127.0.0.1:6379",
               help="Redis URL holding farm's inventory, state and events "
                    "(redis://[:password@]host:port[/db])."),
    cfg.StrOpt("namespace", default="farm",
               help="Prefix of every Redis key farm writes, so that several farms "
                    "can share one Redis."),
    cfg.StrOpt("tooz_url", default="",
               help="tooz backend for membership and election (etcd3, zookeeper, "
                    "...). Empty: tooz's Redis driver on backend_url. State stays "
                    "in backend_url either way."),
    cfg.FloatOpt("membership_timeout", default=10.0, min=1.0,
                 help="Seconds without a heartbeat after which a worker is out of "
                      "the group and its partitions move."),
    cfg.FloatOpt("leader_timeout", default=10.0, min=2.0,
                 help="Seconds within which a standby coordinator takes over from "
                      "a leader that died."),
    cfg.IntOpt("partitions", default=1024, min=1, max=1048576,
               help="Partitions nodes are hashed into. Fixed for the life of a "
                    "farm: the first coordinator records it in Redis."),
]

worker_opts = [
    cfg.StrOpt("executor", default="threads", choices=["threads", "processes"],
               help="Where polls run: a thread pool in the worker process, or a "
                    "pool of spawned child processes."),
    cfg.IntOpt("workers_pool_size", default=64, min=1, max=4096,
               help="Most polls in flight at once (threads or child processes)."),
    cfg.FloatOpt("poll_interval", default=60.0, min=0.1,
                 help="Seconds between the starts of two polls of one node."),
    cfg.FloatOpt("bmc_timeout", default=5.0, min=0.1,
                 help="Hard deadline in seconds for one poll (login included); "
                      "farm enforces it, not pyghmi's retry schedule."),
    cfg.FloatOpt("session_idle_max", default=25.0, min=0.0,
                 help="A kept IPMI session idle longer than this is logged out "
                      "and a new one opened, because BMCs drop idle sessions "
                      "(often after 30-60 s). 0 logs out after every poll."),
    cfg.FloatOpt("inventory_refresh_interval", default=10.0, min=0.5,
                 help="Seconds between re-reads of the inventory; added and "
                      "removed nodes are picked up without a restart."),
    cfg.FloatOpt("result_flush_interval", default=0.2, min=0.01,
                 help="Seconds poll results may wait before they are written "
                      "to Redis in one pipelined batch."),
]

logging_opts = [
    cfg.StrOpt("level", default="INFO",
               choices=["DEBUG", "INFO", "WARNING", "ERROR"],
               help="Log level of farm's daemons."),
    cfg.StrOpt("format", default="text", choices=["text", "json"],
               help="text: one readable line per record; json: one JSON object "
                    "per line, for log shippers."),
]

metrics_opts = [
    cfg.StrOpt("bind", default="127.0.0.1",
               help="Address the Prometheus metrics endpoint listens on "
                    "(0.0.0.0 in a container)."),
    cfg.IntOpt("port", default=9470, min=0, max=65535,
               help="Port of farm-worker's metrics endpoint; 0 picks a free port "
                    "(logged at start)."),
    cfg.IntOpt("coordinator_port", default=9471, min=0, max=65535,
               help="Port of farm-coordinator's metrics endpoint; 0 picks a free "
                    "port (logged at start)."),
    cfg.BoolOpt("enabled", default=True, help="Serve metrics at all."),
]

GROUPS = {"coordination": coordination_opts, "worker": worker_opts,
          "logging": logging_opts, "metrics": metrics_opts}


def list_opts():
    """Entry point for oslo-config-generator (namespace `farm`)."""
    return [(group, opts) for group, opts in GROUPS.items()]


@dataclasses.dataclass(frozen=True)
class Coordination:
    backend_url: str
    namespace: str
    tooz_url: str
    membership_timeout: float
    leader_timeout: float
    partitions: int


@dataclasses.dataclass(frozen=True)
class Worker:
    executor: str
    workers_pool_size: int
    poll_interval: float
    bmc_timeout: float
    session_idle_max: float
    inventory_refresh_interval: float
    result_flush_interval: float


@dataclasses.dataclass(frozen=True)
class Logging:
    level: str
    format: str


@dataclasses.dataclass(frozen=True)
class Metrics:
    bind: str
    port: int
    coordinator_port: int
    enabled: bool


@dataclasses.dataclass(frozen=True)
class Settings:
    coordination: Coordination
    worker: Worker
    logging: Logging
    metrics: Metrics


def load(config_file=None, overrides=None):
    """Read configuration and return plain Settings, or raise ConfigError.

    Every option is read here, because oslo.config only validates a value when
    it is first accessed and a bad value should stop a daemon at start-up.
    `overrides` maps "group.option" to a value given on the command line.
    """
    conf = cfg.ConfigOpts()
    for group, opts in GROUPS.items():
        conf.register_opts(opts, group=group)
    args = []
    if config_file:
        if not os.path.isfile(config_file):
            raise errors.ConfigError(f"config file not found: {config_file}")
        args = ["--config-file", config_file]
    try:
        # Explicit args: oslo.config would otherwise parse sys.argv, which
        # belongs to click.
        conf(args=args, project="farm", default_config_files=[],
             default_config_dirs=[])
        for key, value in (overrides or {}).items():
            group, name = key.split(".")
            conf.set_override(name, value, group=group)
        values = {}
        for group, opts in GROUPS.items():
            values[group] = {o.dest: getattr(getattr(conf, group), o.dest)
                             for o in opts}
    except (cfg.Error, ValueError) as exc:
        raise errors.ConfigError(f"invalid configuration: {exc}") from None
    return Settings(coordination=Coordination(**values["coordination"]),
                    worker=Worker(**values["worker"]),
                    logging=Logging(**values["logging"]),
                    metrics=Metrics(**values["metrics"]))
