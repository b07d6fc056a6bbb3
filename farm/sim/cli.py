"""farm-sim: serve N simulated BMCs until SIGTERM or SIGINT."""

import json
import logging
import os
import signal
import sys
import threading

import click

from farm.fleet import inventory
from farm.sim.fleet import Fleet
from farm.sim.hardware import ControlJournal
from farm.sim.lean import LeanFleet
from farm.sim.quirks import parse as parse_quirks


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--count", type=click.IntRange(1, 20000), default=10, show_default=True)
@click.option("--protocol", type=click.Choice(["ipmi", "redfish"]), default="ipmi", show_default=True,
              help="redfish: HTTP(S) Redfish BMCs (service root, sessions, one ComputerSystem "
                   "with PowerState and Reset, its Chassis's Thermal and Power, its SEL "
                   "LogService) instead of IPMI ones.")
@click.option("--tls", is_flag=True,
              help="redfish: serve HTTPS with a self-signed certificate written next to the "
                   "inventory (the inventory's verify_tls names it).")
@click.option("--redfish-shape", type=click.Choice(["deprecated", "current", "both"]),
              default="deprecated", show_default=True,
              help="redfish: the chassis's sensors as Thermal and Power (deprecated), as a "
                   "Sensors collection with ThermalSubsystem, PowerSubsystem and "
                   "EnvironmentMetrics (current: bmcweb's default build), or both.")
@click.option("--redfish-expand", type=click.Choice(["on", "off", "refused"]), default="on",
              show_default=True,
              help="redfish: $expand on the Sensors collection served (on), neither offered nor "
                   "served (off), or offered in the service root and answered 501 (refused).")
@click.option("--max-sessions", type=click.IntRange(0, 10000), default=0, show_default=True,
              help="redfish: sessions each BMC holds at most (iDRAC: 8); a login past them is "
                   "answered 503 with iDRAC's RAC0218. 0: no limit.")
@click.option("--engine", type=click.Choice(["pyghmi", "lean"]), default="pyghmi", show_default=True,
              help="pyghmi: pyghmi's BMC server (cipher suite 3 only; the oracle farm's tests use). "
                   "lean: farm's own epoll server (suites 17 and 3), cheap enough for 100,000 BMCs "
                   "on one host; no --delay. Redfish BMCs are always served by one "
                   "asyncio event loop (farm.sim.redfish_server).")
@click.option("--address", default="127.0.0.1", show_default=True,
              help="Loopback address the BMCs listen on.")
@click.option("--base-port", type=click.IntRange(1, 65535), default=16230, show_default=True,
              help="BMC i listens on base-port + i.")
@click.option("--username", default="admin", show_default=True)
@click.option("--password", envvar="FARM_SIM_PASSWORD", default="password",
              help="BMC password (or FARM_SIM_PASSWORD, which keeps it out of argv).")
@click.option("--delay", type=click.FloatRange(0, 60), default=0.0, show_default=True,
              help="Seconds each BMC waits before answering a command.")
@click.option("--hung-fraction", type=click.FloatRange(0, 1), default=0.0, show_default=True)
@click.option("--off-fraction", type=click.FloatRange(0, 1), default=0.0, show_default=True)
@click.option("--session-timeout", type=click.FloatRange(1, 3600), default=60.0, show_default=True,
              help="Seconds after which a BMC forgets an idle session (IPMI's default: 60). "
                   "SIGUSR1 makes every BMC forget every session at once.")
@click.option("--name-prefix", default="bmc-", show_default=True,
              help="BMC i is named PREFIX + its port (fleets on several addresses need distinct prefixes).")
@click.option("--power-delay", type=click.FloatRange(0, 600), default=0.0, show_default=True,
              help="Seconds a power change takes (the old state reads until then; a cycle "
                   "reads off until then), as on real BMCs.")
@click.option("--sensor-period", type=click.FloatRange(0, 86400), default=600.0, show_default=True,
              help="Seconds of one sensor drift cycle (0: readings stand still).")
@click.option("--hot-fraction", type=click.FloatRange(0, 1), default=0.05, show_default=True,
              help="BMCs whose CPU temperature and FAN1 cross their thresholds each cycle.")
@click.option("--sel-interval", type=click.FloatRange(0, 86400), default=3600.0, show_default=True,
              help="Seconds between the event-log entries each BMC gains by itself (0: only on "
                   "power changes and clears). The log holds 512 entries, then wraps.")
@click.option("--quirk", "quirk_names", default="",
              help="Misbehave as real BMCs do (lean engine): a comma list of "
                   "intel20, supermicro20, sun20, opensesspriv, authcap, nochecksumcheck "
                   "(farm.sim.quirks says which boards and how).")
@click.option("--quirk-fraction", type=click.FloatRange(0, 1), default=1.0, show_default=True,
              help="The fraction of the BMCs that have the quirks.")
@click.option("--control-log", type=click.Path(dir_okay=False),
              help="Append a line per Chassis Control received: epoch seconds, BMC name, action.")
@click.option("--inventory", "inventory_file", type=click.Path(dir_okay=False),
              help="Write the fleet's inventory here (YAML, for `farm nodes import`).")
def main(count, protocol, tls, redfish_shape, redfish_expand, max_sessions, engine, address,
         base_port, username, password, delay, hung_fraction,
         off_fraction, session_timeout, power_delay, sensor_period, hot_fraction, sel_interval,
         name_prefix, quirk_names, quirk_fraction, control_log, inventory_file):
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s farm-sim %(levelname)s %(message)s")
    if base_port + count - 1 > 65535:
        raise click.BadParameter("base-port + count - 1 exceeds 65535", param_hint="--count")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    if engine == "lean" and delay and protocol == "ipmi":
        raise click.BadParameter("the lean engine has no --delay", param_hint="--delay")
    try:
        quirks = parse_quirks(quirk_names)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--quirk") from None
    if quirks and (engine != "lean" or protocol != "ipmi"):
        raise click.BadParameter("quirks need --engine lean (IPMI)", param_hint="--quirk")
    hardware = {"power_delay": power_delay, "sensor_period": sensor_period,
                "hot_fraction": hot_fraction, "sel_interval": sel_interval}
    if control_log:
        hardware["journal"] = ControlJournal(control_log)
    try:
        if protocol == "redfish":
            from farm.sim.redfish import RedfishFleet
            tls_dir = os.path.dirname(os.path.abspath(inventory_file or ".")) if tls else None
            fleet = RedfishFleet(count, address, base_port, username, password,
                                 hung_fraction=hung_fraction, off_fraction=off_fraction,
                                 delay=delay, name_prefix=name_prefix, tls_dir=tls_dir,
                                 session_timeout=session_timeout, hardware=hardware,
                                 shape=redfish_shape, expand=redfish_expand,
                                 max_sessions=max_sessions)
        elif engine == "lean":
            fleet = LeanFleet(count, address, base_port, username, password,
                              hung_fraction=hung_fraction, off_fraction=off_fraction,
                              session_timeout=session_timeout, name_prefix=name_prefix,
                              hardware=hardware, quirks=quirks, quirk_fraction=quirk_fraction)
        else:
            fleet = Fleet(count, address, base_port, username, password, delay=delay,
                          hung_fraction=hung_fraction, off_fraction=off_fraction,
                          session_timeout=session_timeout, name_prefix=name_prefix,
                              hardware=hardware)
    except OSError as exc:
        raise click.ClickException(f"cannot bind the simulated BMCs: {exc}") from None
    signal.signal(signal.SIGUSR1, lambda *_: setattr(fleet, "drop_requested", True))
    if inventory_file:
        tmp = f"{inventory_file}.tmp{os.getpid()}"
        with open(tmp, "w") as f:
            f.write(inventory.dump_yaml(fleet.nodes))
        os.replace(tmp, inventory_file)
    click.echo(f"farm-sim: {len(fleet.bmcs)} BMCs answering and {len(fleet.hung)} hung on "
               f"{address} ports {base_port}-{base_port + count - 1}; ready", err=True)
    sys.stderr.flush()
    fleet.serve(stop)
    click.echo(f"farm-sim stats: {json.dumps(fleet.stats(), sort_keys=True)}", err=True)
    fleet.close()
