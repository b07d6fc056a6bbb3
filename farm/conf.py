"""Every farm configuration option, and the one place that reads them.

Options are read once at the edge (a CLI) into plain frozen values; nothing reads
configuration at import time. `list_opts` feeds oslo-config-generator.
"""

import dataclasses
import os

from oslo_config import cfg

from farm import errors
from farm.coordination import backend

coordination_opts = [
    cfg.StrOpt("backend_url", default="redis://127.0.0.1:6379",
               help="Redis URL holding farm's inventory, state and events, and "
                    "tooz's groups: redis://[user:password@]host[:port][/db], rediss:// "
                    "(TLS; ?ssl_ca_certs=, ssl_certfile=, ssl_keyfile=), or a Sentinel: "
                    "redis://sentinel:26379?sentinel=MASTER&sentinel_fallback=host:port. "
                    "Percent-encode special characters in the password."),
    cfg.StrOpt("namespace", default="farm",
               help="Prefix of every Redis key farm writes, so that several farms "
                    "can share one Redis."),
    cfg.StrOpt("tooz_url", default="",
               help="tooz backend for membership and election (etcd3, zookeeper, "
                    "...). Empty: tooz's Redis driver on backend_url. State stays "
                    "in backend_url either way."),
    cfg.FloatOpt("membership_timeout", default=10.0, min=1.0,
                 help="Seconds without a heartbeat after which a worker is out of "
                      "the group and its partitions move. A worker acts on power only "
                      "within membership_timeout - ceil(leader_timeout / 2) - 1 s of its "
                      "last round trip to Redis (4 s with the defaults; at least 0.5 s: "
                      "docs/architecture.md, who may act)."),
    cfg.FloatOpt("leader_timeout", default=10.0, min=2.0,
                 help="Seconds within which a standby coordinator takes over from "
                      "a leader that died."),
    cfg.IntOpt("partitions", default=1024, min=1, max=1048576,
               help="Partitions nodes are hashed into. Fixed for the life of a "
                    "farm: the first coordinator records it in Redis."),
]

worker_opts = [
    cfg.StrOpt("executor", default="threads", choices=["threads", "processes"],
               help="Where the poll engine runs: a thread of the worker process, "
                    "or `processes` spawned children (one engine each; a node "
                    "always goes to the same child, so its session lives there)."),
    cfg.IntOpt("processes", default=0, min=0, max=256,
               help="Children of the processes executor; 0: one per CPU."),
    cfg.IntOpt("workers_pool_size", default=1024, min=1, max=65536,
               help="Most polls in flight at once per poll engine (a hung BMC "
                    "holds one until its deadline)."),
    cfg.FloatOpt("poll_interval", default=60.0, min=0.1,
                 help="Seconds between the starts of two polls of one node."),
    cfg.FloatOpt("bmc_timeout", default=5.0, min=0.1,
                 help="Hard deadline in seconds for one poll (login included); "
                      "farm enforces it, not a library's retry schedule."),
    cfg.FloatOpt("retry_interval", default=1.0, min=0.05,
                 help="Seconds after which an unanswered IPMI packet is sent "
                      "again (UDP loses packets); a kept session that misses "
                      "two answers is presumed dropped and logged in again."),
    cfg.FloatOpt("session_timeout", default=60.0, min=2.0,
                 help="The BMCs' session inactivity timeout (IPMI's default is "
                      "60 s). farm keeps each BMC's session busy below it, or "
                      "logs in afresh once a session idled longer."),
    cfg.BoolOpt("keepalive", default=True,
                help="Send a keepalive (Get Device ID) on sessions idle for "
                     "nearly session_timeout, so a node polled every 60 s or "
                     "more keeps its session instead of logging in every poll."),
    cfg.ListOpt("cipher_suites", default=["17", "3"],
                help="RMCP+ cipher suites to propose, in order (17: SHA256, "
                     "3: SHA1; both AES-CBC-128). The one a BMC accepts is "
                     "remembered."),
    cfg.StrOpt("privilege", default="administrator",
               choices=["user", "operator", "administrator"],
               help="Session privilege level farm asks for. A BMC that refuses it "
                    "gets the next lower level (logged once per BMC); a node's own "
                    "`privilege` in the inventory is exact."),
    cfg.ListOpt("workarounds", default=[],
                help="FreeIPMI-named IPMI workarounds for every node (a node's own "
                     "`workarounds` add to these): intel20, supermicro20, sun20, "
                     "opensesspriv, authcap, nochecksumcheck, integritycheckvalue."),
    cfg.BoolOpt("detect_workarounds", default=True,
                help="Let a BMC's answers show which of intel20, supermicro20/sun20 "
                     "and nochecksumcheck it needs, and apply them (each variant is "
                     "accepted only when the packet's authentication code verifies)."),
    cfg.FloatOpt("result_flush_interval", default=0.2, min=0.01,
                 help="Seconds poll results may wait before they are written "
                      "to Redis in one pipelined batch."),
    cfg.ListOpt("sites", default=["default"],
                help="The sites this worker serves: the BMC networks it can reach. "
                     "A node is polled only by workers of its own site (its "
                     "inventory field `site`, \"default\" when absent)."),
    cfg.ListOpt("backup_sites", default=[],
                help="Sites this worker serves only while they have no live worker "
                     "of their own (it must be able to reach their BMC networks); "
                     "it hands them back when one returns."),
]

tasks_opts = [
    cfg.ListOpt("enabled", default=["power"],
                help="Periodic tasks every worker runs on its nodes: power (the state, "
                     "and the desired state kept), sensors (SDR readings), sel (the "
                     "System Event Log). One BMC never runs two commands at once, "
                     "whichever tasks are due."),
]

power_opts = [
    cfg.IntOpt("max_retries", default=3, min=1, max=100,
               help="Failed corrections of a node's power towards its desired state "
                    "after which farm puts it in maintenance and stops acting on it."),
    cfg.FloatOpt("settle_time", default=30.0, min=0.0,
                 help="Seconds a power correction may take to show in the polled "
                      "state before farm counts it as failed and tries again."),
    cfg.IntOpt("wave_size", default=50, min=1, max=1_000_000,
               help="Bulk power on, cycle and reset: at most this many nodes a wave "
                    "(xCAT's syspowermaxnodes); `farm nodes power --batch` overrides it."),
    cfg.FloatOpt("wave_interval", default=10.0, min=0.0, max=3600.0,
                 help="Bulk power on, cycle and reset: seconds between two waves "
                      "(xCAT's syspowerinterval); `--interval` overrides it. Farm's own "
                      "corrections to on are spaced the same way, fleet-wide: at most "
                      "wave_size in any wave_interval."),
    cfg.IntOpt("confirm_over", default=20, min=1,
               help="`farm nodes power` asks for confirmation before acting on more "
                    "nodes than this, unless --yes is given."),
]

sensors_opts = [
    cfg.FloatOpt("interval", default=300.0, min=0.1,
                 help="Seconds between two sensor passes of one node."),
    cfg.FloatOpt("timeout", default=30.0, min=0.1,
                 help="Deadline of one sensors pass (an SDR read included)."),
]

sel_opts = [
    cfg.FloatOpt("interval", default=600.0, min=0.1,
                 help="Seconds between two System Event Log passes of one node."),
    cfg.FloatOpt("timeout", default=30.0, min=0.1, help="Deadline of one SEL pass."),
    cfg.IntOpt("max_entries_per_pass", default=100, min=1, max=10000,
               help="Most SEL entries read in one pass; a longer backlog goes on next pass."),
    cfg.IntOpt("recent", default=20, min=1, max=1000,
               help="SEL entries kept per node for `farm nodes show`."),
]

bmc_opts = [
    cfg.FloatOpt("min_command_interval", default=0.0, min=0.0, max=60.0,
                 help="Seconds between two commands farm sends one BMC (Ironic's "
                      "[ipmi]min_command_interval; some BMCs crash when hammered). "
                      "Applies to commands in a session, not to login packets."),
]

redfish_opts = [
    cfg.IntOpt("pool_size", default=64, min=1, max=4096,
               help="Threads polling Redfish BMCs (sushy blocks): how many Redfish polls run "
                    "at once; a hung Redfish BMC holds one until [worker] bmc_timeout."),
    cfg.BoolOpt("keep_alive", default=True,
                help="Keep each Redfish BMC's HTTP connection between polls (sushy closes it "
                     "after every request, for BMCs that choke on persistent connections: "
                     "false restores that, at a TCP and TLS handshake per request). A kept "
                     "HTTPS connection holds about 60 KiB of the worker's memory (OpenSSL's "
                     "state); false frees it between polls."),
    cfg.IntOpt("max_answer_bytes", default=4 * 2**20, min=65536, max=256 * 2**20,
               help="The largest Redfish answer farm reads; a larger one is an error naming "
                    "this limit, its connection closed (a SEL page of 1,000 entries is about "
                    "1 MB)."),
    cfg.IntOpt("max_members", default=1000, min=10, max=100_000,
               help="The most members farm reads of one Redfish collection in one pass (log "
                    "entries, sensors): more are left out, and entries a BMC lists by "
                    "reference cost one GET each up to this number."),
    cfg.StrOpt("engine", default="asyncio", choices=["threads", "asyncio"],
               help="Where Redfish polls run: threads (a pool of pool_size threads, sushy; a "
                    "request holds a thread as long as the BMC takes) or asyncio (one event "
                    "loop, aiohttp, kept connections: a slow or hung BMC holds a coroutine, "
                    "not a thread). Power actions and SEL clears run on the threads either way."),
    cfg.FloatOpt("login_timeout", default=30.0, min=1.0, max=600.0,
                 help="Deadline of a poll that must first log in and find the system (a BMC's "
                      "first contact, or after farm forgot its session): about five requests "
                      "in turn, and a session login takes seconds on real BMCs. The asyncio "
                      "engine; other polls keep [worker] bmc_timeout or their task's timeout."),
    cfg.IntOpt("max_requests_per_bmc", default=1, min=1, max=8,
               help="Redfish requests farm has in flight to one BMC at most (one poll or "
                    "action at a time each; never two of one task). 1: embedded BMCs serve "
                    "few requests at once (bmcweb on one thread; iDRAC answers 503 past its "
                    "limit), and a poll waiting its turn costs less than a BMC's queue."),
    cfg.IntOpt("sensor_gets_per_pass", default=4, min=1, max=1000,
               help="The most GETs a sensors pass sends a BMC whose Sensors collection "
                    "cannot be read in one GET ($expand): ThermalMetrics' and "
                    "EnvironmentMetrics' readings, then the other sensors in turn (a sensor "
                    "not read this pass keeps its last reading). Set it to the number of "
                    "sensors plus 2 to read every sensor every pass."),
]

events_opts = [
    cfg.IntOpt("max_len", default=100000, min=100,
               help="About how many entries the event stream keeps (older ones are "
                    "trimmed; Redis trims in whole blocks, so slightly more may stay)."),
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
    cfg.BoolOpt("per_node_series", default=False,
                help="Also export farm_node_power_state{node}: one series per owned node "
                     "(100,000 nodes: 100,000 series). farm_nodes{power} and "
                     "farm_nodes_failing{kind} count them without it."),
    cfg.BoolOpt("per_sensor_series", default=False,
                help="Also export farm_sensor_value{node,sensor,type,unit}: one series per "
                     "owned node and sensor (100,000 nodes of 40 sensors: 4,000,000). "
                     "farm_sensors{type,status} counts them without it."),
    cfg.StrOpt("tls_cert_file", default="",
               help="PEM certificate (chain): serve metrics over HTTPS. Needs tls_key_file."),
    cfg.StrOpt("tls_key_file", default="", help="PEM private key of tls_cert_file."),
    cfg.StrOpt("tls_client_ca_file", default="",
               help="PEM CA bundle: require scrapers to present a client certificate it signed."),
    cfg.StrOpt("basic_auth_user", default="",
               help="Require HTTP basic auth with this user name (use with TLS)."),
    cfg.StrOpt("basic_auth_password_file", default="",
               help="File holding the basic auth password (first line); never in the config."),
]

security_opts = [
    cfg.StrOpt("credentials_key_file", default="",
               help="File of Fernet keys (`farm keys generate FILE`; mode 0600): BMC passwords "
                    "are sealed in Redis with the first, opened with any. Needed by `farm nodes "
                    "import` and by every worker."),
    cfg.BoolOpt("allow_plaintext_credentials", default=False,
                help="Without a key file, store BMC passwords in clear in Redis (test farms "
                     "and the demo only); otherwise importing passwords is refused."),
]

api_opts = [
    cfg.HostAddressOpt("bind", default="127.0.0.1",
                       help="Address farm-api listens on (put it behind a load balancer, or "
                            "bind it wider with TLS)."),
    cfg.PortOpt("port", default=6385, help="farm-api's port (Ironic's, so its clients feel "
                                           "at home); 0: a free port, logged."),
    cfg.StrOpt("tls_cert_file", default="", help="PEM certificate (chain): serve HTTPS."),
    cfg.StrOpt("tls_key_file", default="", help="PEM private key of tls_cert_file."),
    cfg.StrOpt("tls_client_ca_file", default="",
               help="PEM CA bundle: also require a client certificate it signed."),
    cfg.StrOpt("tokens_file", default="/etc/farm/api-tokens",
               help="Bearer tokens, one a line: `sha256:<hex digest of the token> <role> "
                    "<name>`, role reader or operator (`farm api token add`). Refused if "
                    "group or others may read it."),
    cfg.StrOpt("enterprise_numbers_file", default="/usr/share/misc/enterprise-numbers.txt",
               help="IANA's registry of enterprise numbers (Debian's ipmitool installs it): "
                    "/ipmi names a BMC's manufacturer from it as FreeIPMI does; without it, "
                    "by number alone."),
    cfg.DictOpt("ipmi_modules", default={"default": "bmc+chassis+dcmi+ipmi+sel"},
                help="ipmi_exporter's modules for GET /ipmi?target=NODE&module=NAME: "
                     "NAME:collector+collector,... with collectors among bmc, chassis, dcmi, "
                     "ipmi, sel (a scrape without module= uses `default`)."),
    cfg.IntOpt("max_body_bytes", default=65536, min=1024, max=16 * 2**20,
               help="The largest request body farm-api reads (413 past it); a bulk action's "
                    "selection is at most 4 KiB. The token is checked before any body is read."),
    cfg.FloatOpt("header_timeout", default=10.0, min=1.0, max=300.0,
                 help="Seconds a client has to send a request's headers once it has connected "
                      "or begun a request; slower connections are closed (slowloris)."),
    cfg.IntOpt("max_connections", default=1000, min=10, max=1_000_000,
               help="Connections and requests farm-api serves at once; more are answered "
                    "503 at once. Keep it below the process's open-file limit "
                    "(LimitNOFILE in farm-api.service)."),
    cfg.IntOpt("max_long_polls", default=100, min=1, max=100_000,
               help="GET /v1/events?wait= requests that may wait at once (on the event loop, "
                    "each holding a Redis connection); more are answered 429."),
]

GROUPS = {"coordination": coordination_opts, "worker": worker_opts,
          "logging": logging_opts, "metrics": metrics_opts, "security": security_opts,
          "tasks": tasks_opts, "power": power_opts, "sensors": sensors_opts, "sel": sel_opts,
          "bmc": bmc_opts, "events": events_opts, "redfish": redfish_opts, "api": api_opts}


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
    processes: int
    workers_pool_size: int
    poll_interval: float
    bmc_timeout: float
    retry_interval: float
    session_timeout: float
    keepalive: bool
    cipher_suites: list
    privilege: str
    workarounds: tuple
    detect_workarounds: bool
    result_flush_interval: float
    sites: tuple = ("default",)
    backup_sites: tuple = ()


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
    per_node_series: bool = False
    per_sensor_series: bool = False
    tls_cert_file: str = ""
    tls_key_file: str = ""
    tls_client_ca_file: str = ""
    basic_auth_user: str = ""
    basic_auth_password_file: str = ""


@dataclasses.dataclass(frozen=True)
class Security:
    credentials_key_file: str = ""
    allow_plaintext_credentials: bool = False


@dataclasses.dataclass(frozen=True)
class Tasks:
    enabled: tuple = ("power",)


@dataclasses.dataclass(frozen=True)
class Power:
    max_retries: int = 3
    settle_time: float = 30.0
    wave_size: int = 50
    wave_interval: float = 10.0
    confirm_over: int = 20


@dataclasses.dataclass(frozen=True)
class Sensors:
    interval: float = 300.0
    timeout: float = 30.0


@dataclasses.dataclass(frozen=True)
class Sel:
    interval: float = 600.0
    timeout: float = 30.0
    max_entries_per_pass: int = 100
    recent: int = 20


@dataclasses.dataclass(frozen=True)
class Bmc:
    min_command_interval: float = 0.0


@dataclasses.dataclass(frozen=True)
class Redfish:
    pool_size: int = 64
    keep_alive: bool = True
    max_answer_bytes: int = 4 * 2**20
    max_members: int = 1000
    sensor_gets_per_pass: int = 4
    max_requests_per_bmc: int = 1
    engine: str = "asyncio"
    login_timeout: float = 30.0


@dataclasses.dataclass(frozen=True)
class Events:
    max_len: int = 100000


@dataclasses.dataclass(frozen=True)
class Api:
    bind: str = "127.0.0.1"
    port: int = 6385
    tls_cert_file: str = ""
    tls_key_file: str = ""
    tls_client_ca_file: str = ""
    tokens_file: str = "/etc/farm/api-tokens"
    enterprise_numbers_file: str = "/usr/share/misc/enterprise-numbers.txt"
    ipmi_modules: tuple = (("default", ("bmc", "chassis", "dcmi", "ipmi", "sel")),)
    max_body_bytes: int = 65536
    header_timeout: float = 10.0
    max_connections: int = 1000
    max_long_polls: int = 100


@dataclasses.dataclass(frozen=True)
class Settings:
    coordination: Coordination
    worker: Worker
    logging: Logging
    metrics: Metrics
    security: Security = Security()
    tasks: Tasks = Tasks()
    power: Power = Power()
    sensors: Sensors = Sensors()
    sel: Sel = Sel()
    bmc: Bmc = Bmc()
    events: Events = Events()
    redfish: Redfish = Redfish()
    api: Api = Api()


def config_options(f):
    """--config-file and --config-dir, as every farm command takes them."""
    import click  # only the commands need it
    f = click.option("--config-dir", type=click.Path(file_okay=False),
                     help="Also read every *.conf in this directory.")(f)
    return click.option("--config-file", type=click.Path(dir_okay=False),
                        help="oslo.config file (default: ~/.farm/farm.conf, /etc/farm/farm.conf).")(f)


def default_files():
    """Where farm looks when no --config-file or --config-dir is given, as
    OpenStack services do: the first that exists of ~/.farm/farm.conf,
    ~/farm.conf, /etc/farm/farm.conf, /etc/farm.conf."""
    return cfg.find_config_files(project="farm", prog="farm")


def _check_acting_bound(c):
    from farm.power import lease
    bound = lease.acting_bound(c["membership_timeout"], c["leader_timeout"])
    if bound < lease.MIN_BOUND:
        raise errors.ConfigError(
            f"invalid configuration: [coordination] membership_timeout "
            f"{c['membership_timeout']:g} s leaves a worker {bound:g} s to act after it last "
            f"heard from Redis (membership_timeout - tooz's heartbeat "
            f"{lease.tooz_heartbeat(c['membership_timeout'], c['leader_timeout']):g} s - "
            f"{lease.MARGIN:g} s); it "
            f"needs at least {lease.MIN_BOUND:g} s: raise membership_timeout")


def load(config_file=None, overrides=None, config_dir=None):
    """Read configuration and return plain Settings, or raise ConfigError.

    Every option is read here, because oslo.config only validates a value when
    it is first accessed and a bad value should stop a daemon at start-up.
    `overrides` maps "group.option" to a value given on the command line.
    `config_dir` adds every *.conf in it (after config_file). With neither,
    default_files() are read.
    """
    conf = cfg.ConfigOpts()
    for group, opts in GROUPS.items():
        conf.register_opts(opts, group=group)
    args = []
    if config_file:
        if not os.path.isfile(config_file):
            raise errors.ConfigError(f"config file not found: {config_file}")
        args += ["--config-file", config_file]
    if config_dir:
        if not os.path.isdir(config_dir):
            raise errors.ConfigError(f"config directory not found: {config_dir}")
        args += ["--config-dir", config_dir]
    try:
        # Explicit args: oslo.config would otherwise parse sys.argv, which
        # belongs to click.
        conf(args=args, project="farm", default_config_files=[] if args else default_files(),
             default_config_dirs=[])
        for key, value in (overrides or {}).items():
            group, name = key.split(".")
            conf.set_override(name, value, group=group)
        values = {}
        for group, opts in GROUPS.items():
            values[group] = {o.dest: getattr(getattr(conf, group), o.dest)
                             for o in opts}
    except (cfg.Error, ValueError) as exc:
        raise errors.ConfigError(f"invalid configuration: {backend.redact(str(exc))}") from None
    backend.parse(values["coordination"]["backend_url"])  # ConfigError, redacted
    _check_acting_bound(values["coordination"])
    return Settings(coordination=Coordination(**values["coordination"]),
                    worker=_worker(values["worker"]),
                    logging=Logging(**values["logging"]),
                    metrics=Metrics(**values["metrics"]),
                    security=Security(**values["security"]),
                    tasks=_tasks(values["tasks"]), power=Power(**values["power"]),
                    sensors=Sensors(**values["sensors"]), sel=Sel(**values["sel"]),
                    bmc=Bmc(**values["bmc"]), events=Events(**values["events"]),
                    redfish=Redfish(**values["redfish"]), api=_api(values["api"]))


def _api(values):
    from farm.api.ipmi import COLLECTORS as known
    modules = []
    for name, text in sorted((values.pop("ipmi_modules") or {}).items()):
        collectors = tuple(c.strip() for c in text.split("+") if c.strip())
        wrong = [c for c in collectors if c not in known]
        if wrong or not collectors:
            raise errors.ConfigError(f"invalid configuration: [api] ipmi_modules: module {name}: "
                                     f"collectors are among {', '.join(known)}, "
                                     f"not {'+'.join(wrong) or 'none'}")
        modules.append((name, collectors))
    return Api(**values, ipmi_modules=tuple(modules))


def _tasks(values):
    from farm.tasks import load_tasks
    names = tuple(dict.fromkeys(n.strip() for n in values["enabled"] if n.strip()))
    if not names:
        raise errors.ConfigError("invalid configuration: [tasks] enabled is empty")
    try:
        load_tasks(names)
    except LookupError as exc:
        raise errors.ConfigError(f"invalid configuration: [tasks] enabled: {exc}") from None
    return Tasks(enabled=names)


def _worker(values):
    suites = []
    for item in values["cipher_suites"]:
        if item.strip() not in ("3", "17"):
            raise errors.ConfigError(f"invalid configuration: [worker] cipher_suites: "
                                     f"{item!r} is not 3 or 17")
        suites.append(int(item))
    if not suites:
        raise errors.ConfigError("invalid configuration: [worker] cipher_suites is empty")
    from farm.bmc.rmcp import WORKAROUNDS
    unknown = [w for w in values["workarounds"] if w.strip() not in WORKAROUNDS]
    if unknown:
        raise errors.ConfigError(f"invalid configuration: [worker] workarounds: {unknown[0]!r} "
                                 f"is not one of {', '.join(WORKAROUNDS)}")
    sites = _sites("sites", values["sites"])
    if not sites:
        raise errors.ConfigError("invalid configuration: [worker] sites is empty (a worker "
                                 "serves at least one site)")
    backup = tuple(s for s in _sites("backup_sites", values["backup_sites"]) if s not in sites)
    return Worker(**dict(values, cipher_suites=tuple(suites),
                         workarounds=tuple(w.strip() for w in values["workarounds"]),
                         sites=sites, backup_sites=backup))


def _sites(option, values):
    """Site names as the inventory's `site` field allows them, in order, once."""
    from farm.fleet.inventory import LABEL_VALUE_RE
    out = []
    for item in values:
        site = item.strip()
        if not LABEL_VALUE_RE.match(site):
            raise errors.ConfigError(f"invalid configuration: [worker] {option}: {site!r} is "
                                     f"not a site name (1-128 of [A-Za-z0-9_.:/+-])")
        if site not in out:
            out.append(site)
    return tuple(out)


def engine_config(worker, settings=None):
    """The poll engine's settings from [worker], and with `settings` the
    tasks' deadlines and [bmc] (plain values, picklable)."""
    from farm.bmc.engine import EngineConfig
    from farm.bmc.rmcp import PRIVILEGES
    extra = {}
    if settings is not None:
        extra = {"min_command_interval": settings.bmc.min_command_interval,
                 "timeouts": (("sensors", settings.sensors.timeout), ("sel", settings.sel.timeout),
                              ("sel-clear", max(worker.bmc_timeout, 10.0)))}
    return EngineConfig(**extra, timeout=worker.bmc_timeout, retry_interval=worker.retry_interval,
                        session_timeout=worker.session_timeout, keepalive=worker.keepalive,
                        max_in_flight=worker.workers_pool_size,
                        cipher_suites=worker.cipher_suites,
                        privilege=PRIVILEGES[worker.privilege],
                        workarounds=tuple(worker.workarounds),
                        detect_workarounds=worker.detect_workarounds)


def redfish_config(settings, engine, for_children=False):
    """The Redfish executor's settings (picklable), with the tasks'
    deadlines of `engine` (engine_config's); `for_children` adds what a
    poll process needs to open its own Store for the sealed sessions."""
    from farm.polling.redfish_engines import RedfishConfig
    r, c, s = settings.redfish, settings.coordination, settings.security
    store = ((c.backend_url, c.namespace, s.credentials_key_file, s.allow_plaintext_credentials)
             if for_children else None)
    return RedfishConfig(engine=r.engine, pool_size=r.pool_size, timeout=engine.timeout,
                         timeouts=engine.timeouts, keep_alive=r.keep_alive,
                         max_answer_bytes=r.max_answer_bytes, max_members=r.max_members,
                         sensor_gets=r.sensor_gets_per_pass, per_bmc=r.max_requests_per_bmc,
                         login_timeout=r.login_timeout, store=store)
