"""farm: the operator's command line (inventory and state)."""

import json
import logging
import os
import sys
import time

import click

from farm import conf, errors
from farm.credentials import Credentials, generate_key_file, read_keys
from farm.fleet import inventory
from farm.fleet.views import list_rows, select, status_report, summary
from farm.store import ActionConflict, Store

PROGRESS_FROM = 10_000  # nodes; smaller imports finish before a bar helps
BACKEND_ERRORS = (errors.BackendUnavailable, errors.BackendRefused)


class _Ctx:
    def __init__(self, config_file):
        # `farm --config-file F status` as well as `farm status --config-file F`
        root = click.get_current_context().find_root().params
        config_file = config_file or root.get("config_file")
        try:
            self.settings = conf.load(config_file, config_dir=root.get("config_dir"))
        except errors.ConfigError as exc:
            raise click.ClickException(str(exc)) from None
        c = self.settings.coordination
        try:
            self.store = Store(c.backend_url, c.namespace, events_max_len=self.settings.events.max_len)
        except (*BACKEND_ERRORS, errors.ConfigError) as exc:
            raise click.ClickException(str(exc)) from None

    def select(self, text):
        """The names a selection picks, or a clear error (nothing changed)."""
        from farm.fleet.selection import SelectionError
        try:
            return select(self.store, text)
        except SelectionError as exc:
            raise click.ClickException(f"{exc}; nothing changed") from None


def _config_option(f):
    return click.option("--config-file", type=click.Path(dir_okay=False),
                        help="oslo.config file ([coordination] backend_url, namespace).")(f)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@conf.config_options
def main(config_file, config_dir):
    """Administer a farm: its inventory and the state of its nodes."""


@main.group()
def nodes():
    """The inventory of nodes and their last known state."""


@nodes.command("import")
@_config_option
@click.option("--replace", is_flag=True, help="Remove nodes that are not in FILE.")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
def import_(config_file, replace, file):
    """Load nodes from a YAML (`nodes:` list) or CSV file. A file with any bad
    entry changes nothing."""
    try:
        if os.path.getsize(file) > inventory.MAX_BYTES:  # refused before it is read
            raise errors.InventoryError([f"larger than {inventory.MAX_BYTES // 2**20} MiB; split it"])
        with open(file, encoding="utf-8") as f:
            parsed = inventory.parse(f.read(), file)
    except UnicodeDecodeError as exc:
        raise click.ClickException(f"{file}: not UTF-8 text ({exc.reason})") from None
    except errors.InventoryError as exc:
        lines = "\n".join(f"  {p}" for p in exc.problems[:50])
        more = f"\n  ... and {len(exc.problems) - 50} more" if len(exc.problems) > 50 else ""
        raise click.ClickException(f"{file}: {len(exc.problems)} problem(s), nothing "
                                   f"imported:\n{lines}{more}") from None
    ctx = _Ctx(config_file)
    try:
        ctx.store.credentials = Credentials.from_settings(ctx.settings.security)
        if any(n.password for n in parsed):
            ctx.store.credentials.check_can_store()
    except errors.ConfigError as exc:
        raise click.ClickException(f"{exc}; nothing imported") from None
    try:
        if len(parsed) >= PROGRESS_FROM:
            with click.progressbar(length=len(parsed), label="importing", file=sys.stderr) as bar:
                counts = ctx.store.import_nodes(parsed, replace=replace, progress=bar.update)
        else:
            counts = ctx.store.import_nodes(parsed, replace=replace)
    except (*BACKEND_ERRORS, errors.CredentialsError, ActionConflict) as exc:
        raise click.ClickException(f"{exc}; nothing imported") from None
    click.echo(f"{len(parsed)} nodes in {file}: {counts['added']} added, {counts['updated']} "
               f"updated, {counts['unchanged']} unchanged, {counts['removed']} removed")


@main.group()
def api():
    """farm-api's bearer tokens ([api] tokens_file)."""


@api.group("token")
def api_token():
    """Tokens for farm-api."""


@api_token.command("add")
@click.option("--role", type=click.Choice(["reader", "operator"]), required=True,
              help="reader: GET only; operator: may also act (power, desired, maintenance).")
@click.option("--name", required=True, help="Who holds it (shown in events as NAME@api).")
@click.argument("file", type=click.Path(dir_okay=False))
def api_token_add(role, name, file):
    """Append a new token's digest to FILE (created mode 0600) and print the
    token, once: only its SHA-256 is kept."""
    from farm.api.tokens import add
    try:
        token = add(file, role, name)
    except errors.ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:
        raise click.ClickException(f"{file}: {exc.strerror}") from None
    click.echo(token)
    click.echo(f"added {role} token {name} to {file}; it is shown this once", err=True)


@main.group()
def keys():
    """The keys that seal BMC passwords in Redis ([security] credentials_key_file)."""


@keys.command("generate")
@click.argument("file", type=click.Path(dir_okay=False))
def keys_generate(file):
    """Write a new key to FILE (mode 0600; an existing file is never overwritten)."""
    try:
        generate_key_file(file)
    except OSError as exc:
        raise click.ClickException(f"{file}: {exc.strerror}") from None
    click.echo(f"wrote a new key to {file}; put it first in every host's "
               f"[security] credentials_key_file")


@keys.command("rotate")
@_config_option
@click.option("--new-key-file", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Seal every stored password with this file's first key.")
def keys_rotate(config_file, new_key_file):
    """Seal every stored BMC password (and the Redfish session tokens farm
    keeps) with a new key, in one transaction. Workers keep polling: put the
    new key first in their key files (the old one after it) before running
    this; drop the old key afterwards."""
    ctx = _Ctx(config_file)
    try:
        ctx.store.credentials = Credentials.from_settings(ctx.settings.security)
        new_keys = read_keys(new_key_file)
        count, sessions = ctx.store.reseal(new_keys)
    except (errors.ConfigError, errors.CredentialsError, *BACKEND_ERRORS) as exc:
        raise click.ClickException(f"{exc}; nothing changed") from None
    click.echo(f"{count} stored passwords and {sessions} Redfish session tokens sealed with "
               f"the first key of {new_key_file}")


@nodes.command("remove")
@_config_option
@click.argument("selections", nargs=-1, required=True)
def remove(config_file, selections):
    """Remove the selected nodes (their state too); workers drop them
    without a restart. Each argument is a selection. The Redfish sessions
    farm holds on their BMCs are ended."""
    ctx = _Ctx(config_file)
    try:
        names = sorted({n for text in selections for n in ctx.select(text)})
        try:
            sessions = _held_sessions(ctx, names)
        except errors.ConfigError as exc:  # the key file: sessions then idle out on the BMCs
            click.echo(f"Redfish sessions not ended: {exc}", err=True)
            sessions = []
        removed = ctx.store.remove_nodes(names)
    except (ActionConflict, *BACKEND_ERRORS) as exc:
        raise click.ClickException(f"{exc}; nothing removed") from None
    click.echo(f"{removed} of {len(names)} nodes removed")
    _end_sessions(sessions)


@nodes.command("forget-session")
@_config_option
@click.argument("name")
def forget_session(config_file, name):
    """End the Redfish session farm holds on NAME's BMC and forget it; the
    node's next poll logs in anew (to free a slot in a full session table,
    or after a BMC was reset)."""
    ctx = _Ctx(config_file)
    try:
        sessions = _held_sessions(ctx, [name])
        ctx.store.forget_redfish_session(name)
    except (errors.ConfigError, *BACKEND_ERRORS) as exc:
        raise click.ClickException(f"{exc}; nothing changed") from None
    if not sessions:
        click.echo(f"{name}: farm holds no Redfish session on its BMC")
    _end_sessions(sessions)


def _held_sessions(ctx, names):
    """[(Node, token, uri)] of the Redfish sessions farm keeps for `names`."""
    from farm.store.inventory import node_from_entry
    ctx.store.credentials = Credentials.from_settings(ctx.settings.security)
    out = []
    for name in names:
        held = ctx.store.redfish_session(name)
        detail = ctx.store.node_detail(name, recent=0) if held else None
        if held and detail:
            public = detail["node"]
            node = node_from_entry(name, {k: v for k, v in public.items() if k != "name"}, "")
            out.append((node, *held))
    return out


def _end_sessions(sessions):
    """Log each session out at its BMC; say which could not be."""
    from farm.bmc.redfish import end_session
    for node, token, uri in sessions:
        try:
            end_session(node, token, uri)
            click.echo(f"{node.name}: its Redfish session ended")
        except errors.BmcError as exc:
            click.echo(f"{node.name}: its Redfish session forgotten but not ended ({exc}); "
                       f"the BMC drops it when it idles out", err=True)


def _now(store):
    """Redis's clock, which stamps results (see node_rows)."""
    return store.server_time()


def _age(ts, now):
    return "never" if ts is None else f"{now - ts:.1f}s"


@nodes.command("list")
@_config_option
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@click.option("--state", type=click.Choice(["on", "off", "unknown"]),
              help="Only nodes in this power state.")
@click.option("--stale", is_flag=True,
              help="Only nodes not polled for two poll intervals (or never).")
@click.option("--limit", type=click.IntRange(0), default=1000, show_default=True,
              help="Nodes per page, sorted by name (0: all).")
@click.option("--after", metavar="NAME", help="Start after this node name (the next page).")
@click.argument("selection", required=False)
def list_(config_file, as_json, state, stale, limit, after, selection):
    """Show nodes (all, or a SELECTION) with their last power state, the age
    of their last poll and their labels, a page at a time. --stale reads
    only the stale nodes (the poll index); --state alone reads every node's
    state."""
    ctx = _Ctx(config_file)
    try:
        now = _now(ctx.store)
        chosen = ctx.select(selection) if selection else None
        rows, total = list_rows(ctx.store, now, state, stale,
                                2 * ctx.settings.worker.poll_interval, after, limit, chosen)
    except BACKEND_ERRORS as exc:
        raise click.ClickException(str(exc)) from None
    if total is not None and len(rows) < total and rows:
        click.echo(f"{len(rows)} of {total} nodes; next page: --after {rows[-1]['name']}"
                   f" (--limit 0: all)", err=True)
    if as_json:
        click.echo(json.dumps(rows, indent=1))
        return
    click.echo(f"{'NAME':<24} {'SITE':<12} {'ADDRESS':<24} {'PORT':>5} {'POWER':<6} "
               f"{'POLLED':>9}  LABELS / ERROR")
    for r in rows:
        labels = ",".join(f"{k}={v}" for k, v in sorted((r.get("labels") or {}).items()))
        click.echo(f"{r['name']:<24} {r['site']:<12} {r['address']:<24} {r['port'] or '-':>5} "
                   f"{r['power_state'] or '-':<6} {_age(r['last_polled_at'], now):>9}  "
                   f"{'  '.join(x for x in (labels, r['last_error'] or '') if x)}")


@nodes.command("summary")
@_config_option
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
@click.option("--recount", is_flag=True,
              help="Count every node's state anew first (about 1 s per 100,000 nodes).")
def summary_(config_file, as_json, recount):
    """Count nodes by power state and error, and show the oldest poll."""
    store = _Ctx(config_file).store
    try:
        s = summary(store, recount)
    except BACKEND_ERRORS as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(json.dumps(s))
        return
    power = " ".join(f"{k}={v}" for k, v in s["power"].items())
    failing = " ".join(f"{k}={v}" for k, v in s["failing"].items()) or "none"
    oldest = "-" if s["oldest_poll_age"] is None else f"{s['oldest_poll_age']}s"
    click.echo(f"{s['nodes']} nodes; power: {power}; failing: {failing}; "
               f"never polled: {s['never_polled']}; oldest poll: {oldest} ago")


@main.command()
@_config_option
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
@click.option("--watch", is_flag=True, help="Refresh in place until Ctrl-C.")
@click.option("--interval", type=click.FloatRange(0.2, 3600), default=2.0, show_default=True,
              help="Seconds between refreshes with --watch.")
def status(config_file, as_json, watch, interval):
    """The leader, the assignment generation, each worker, stale nodes."""
    ctx = _Ctx(config_file)
    if not watch:
        report = _status(ctx)
        click.echo(json.dumps(report, indent=1) if as_json else render_status(report))
        return
    try:
        while True:
            try:
                text = render_status(_status(ctx))
            except click.ClickException as exc:
                text = f"error: {exc.message}"
            if sys.stdout.isatty():  # redraw in place
                click.echo("\x1b[2J\x1b[H", nl=False, color=True)
            click.echo(time.strftime("%H:%M:%S ") + text + ("" if sys.stdout.isatty() else "\n"))
            sys.stdout.flush()  # each redraw now, also into a pipe (`| tee`)
            time.sleep(interval)
    except KeyboardInterrupt:
        pass


def _status(ctx):
    try:
        return status_report(ctx.store, ctx.settings.worker.poll_interval, _now(ctx.store))
    except BACKEND_ERRORS as exc:
        raise click.ClickException(str(exc)) from None


def render_status(report):
    """The status report as a readable table (pure)."""
    # a dark site first: its nodes are read by nobody, and nothing else says so
    lines = [f"DARK SITE {d['site']}: {d['nodes']} nodes and no live worker serving them "
             f"(none with {d['site']} in [worker] sites or backup_sites is running)"
             for d in report.get("dark", ())]
    lines += [f"leader: {report['leader'] or 'none'}   generation: {report['generation'] or 'none'}"
              f"   partitions: {report['partitions'] or '-'}",
              f"{'WORKER':<44} {'HOST':<16} {'PID':>7} {'PARTS':>6} {'NODES':>6}  HEARTBEAT"]
    for w in report["workers"]:
        age = "gone" if w["heartbeat_age"] is None else f"{w['heartbeat_age']}s ago"
        if abs(w.get("clock_skew") or 0) > 2:
            age += f" (its clock is {w['clock_skew']:+.1f}s off)"
        parts = "-" if w["partitions"] is None else w["partitions"]
        lines.append(f"{w['id']:<44} {w['host'] or '?':<16} {w['pid'] or '?':>7} {parts:>6} "
                     f"{w['nodes'] if w['nodes'] is not None else '-':>6}  {age}")
    sites = report.get("sites") or []
    if len(sites) > 1 or any(r["site"] != "default" for r in sites):
        lines.append(f"{'SITE':<24} {'NODES':>7} {'READ':>7} {'WORKERS':>7}  SERVED BY")
        for r in sites:
            served = ("nobody" if not r["serving"] else
                      "backup " + ", ".join(r["serving"]) if not set(r["serving"]) & set(r["workers"])
                      else f"{len(r['serving'])} of its workers")
            lines.append(f"{r['site']:<24} {r['nodes']:>7} {r['fresh']:>7} {len(r['workers']):>7}  "
                         f"{served}")
    n = report["nodes"]
    lines.append(f"nodes: {n['total']} total, {n['never_polled']} never polled, {n['stale']} stale "
                 f"(not polled for 2 intervals, or by no live worker: {n['unaccounted']})")
    return "\n".join(lines)


@main.command()
@click.argument("address")
@click.option("--port", type=click.IntRange(1, 65535), default=623, show_default=True)
@click.option("--username", "-u", required=True)
@click.option("--password-file", type=click.Path(exists=True, dir_okay=False),
              help="Read the password from this file's first line (else a prompt; never argv).")
@click.option("--kg-file", type=click.Path(exists=True, dir_okay=False),
              help="Read the BMC key K_g (hex) from this file's first line.")
@click.option("--timeout", type=click.FloatRange(0.5, 60), default=3.0, show_default=True,
              help="Seconds per try.")
def probe(address, port, username, password_file, kg_file, timeout):
    """Try every cipher suite and privilege level against one IPMI BMC; say
    what works, what was refused and why, and the inventory entry to use."""
    from farm.fleet import inventory as inv
    from farm.fleet import probe as probing
    if not inv.is_valid_address(address):
        raise click.ClickException(f"not an IP address or host name: {address!r}")
    password = (_first_line(password_file) if password_file
                else click.prompt(f"password for {username}", hide_input=True))
    kg = _first_line(kg_file).strip().lower().removeprefix("0x") if kg_file else ""
    if kg and not inv._HEX_RE.match(kg):
        raise click.ClickException("the K_g file must hold the key in hex (at most 40 digits)")
    node = probing.probe_node(address, port, username, password, kg)
    logging.getLogger("farm.bmc").setLevel(logging.ERROR)  # the report says it all, once
    offered = probing.offered_suites(address, port, min(timeout, 1.0))
    found = probing.trials(node, timeout)
    for line in probing.report(node, found, offered):
        click.echo(line)
    if probing.settings_needed(found) is None:
        raise SystemExit(1)


def _first_line(path):
    with open(path, encoding="utf-8") as f:
        return f.readline().rstrip("\n")


def _register_control():
    from farm.cli import actions, control
    control.register(main, nodes, _Ctx, _config_option)
    actions.register(main, _Ctx, _config_option, control.who)


_register_control()
