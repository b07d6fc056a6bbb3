"""farm's commands that act: a node's whole picture, its desired power state
and maintenance, power actions and SEL clears (run by the worker that owns
the node, through Redis), and the event stream. Registered on farm.cli."""

import getpass
import json
import socket
import sys
import time

import click

from farm import errors
from farm.cli import actions as cli_actions
from farm.cli.actions import when
from farm.fleet.views import (
    EVENT_TYPES,
    Refused,
    against_desired,
    as_float,
    event_matches,
    owner_of,
    owners,
    recent_events,
    send_command,
    wave_settings,
)
from farm.power import plan
from farm.power.control import POWER_ACTIONS

BACKEND_ERRORS = (errors.BackendUnavailable, errors.BackendRefused)


def who():
    """Who asked, as events record it."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def register(main, nodes, make_ctx, config_option):
    @nodes.command("show")
    @config_option
    @click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
    @click.argument("selection")
    def show(config_file, as_json, selection):
        """Everything farm knows of the selected nodes: inventory (no password),
        labels, power and desired state, maintenance, sensor readings, recent
        SEL entries, and each task's last error. SELECTION: a name, a range
        (rack1-[01-40]), all, key=value labels; ',' union, '-' excludes, '@'
        intersects."""
        ctx = make_ctx(config_file)
        try:
            details = [ctx.store.node_detail(n) for n in ctx.select(selection)]
        except BACKEND_ERRORS as exc:
            raise click.ClickException(str(exc)) from None
        details = [d for d in details if d is not None]  # removed meanwhile
        if as_json:
            one = details[0] if len(details) == 1 else details
            click.echo(json.dumps(one, indent=1, sort_keys=True))
            return
        click.echo("\n\n".join(render_detail(d) for d in details))

    @nodes.command("desired")
    @config_option
    @click.argument("selection")
    @click.argument("state", type=click.Choice(["on", "off", "none"]))
    def desired(config_file, selection, state):
        """Record the power state farm keeps the selected nodes in (none: stop
        keeping one). The owning worker corrects the hardware when a poll
        reads the opposite; never on an unknown read, and not in maintenance."""
        ctx = make_ctx(config_file)
        value = "" if state == "none" else state
        try:
            names = ctx.select(selection)
            done = ctx.store.set_controls(names, "desired", who(), desired=value)
            controls = ctx.store.controls_of(names)
        except BACKEND_ERRORS as exc:
            raise click.ClickException(f"{exc}; nothing changed") from None
        held = [n for n in names if controls.get(n, {}).get("maintenance")]
        note = (f"; {len(held)} in maintenance ({', '.join(held[:5])}"
                f"{', ...' if len(held) > 5 else ''}): farm will not act on them until "
                f"`farm nodes maintenance NAME off`" if held else "")
        what = names[0] if len(names) == 1 else f"{done} nodes"
        click.echo(f"{what}: desired power state {state}{note}")

    @nodes.command("maintenance")
    @config_option
    @click.option("--reason", default="", help="Why (shown by `farm nodes show`).")
    @click.argument("selection")
    @click.argument("switch", type=click.Choice(["on", "off"]))
    def maintenance(config_file, reason, selection, switch):
        """Put the selected nodes in maintenance (farm stops enforcing their
        power state) or take them out (enforcement resumes, failure counts
        start afresh)."""
        ctx = make_ctx(config_file)
        value = (reason or f"set by {who()}") if switch == "on" else ""
        try:
            names = ctx.select(selection)
            done = ctx.store.set_controls(names, "maintenance", who(), maintenance=value)
        except BACKEND_ERRORS as exc:
            raise click.ClickException(f"{exc}; nothing changed") from None
        what = names[0] if len(names) == 1 else f"{done} nodes"
        click.echo(f"{what}: maintenance {switch}")

    @nodes.command("power")
    @config_option
    @click.option("--no-wait", is_flag=True,
                  help="Return once the command or plan is in Redis (a plan: print its id).")
    @click.option("--timeout", type=click.FloatRange(1, 600), default=30.0, show_default=True,
                  help="One node: seconds to wait for the outcome (the command expires unrun "
                       "after this). Many: seconds past the last wave to wait for the last steps.")
    @click.option("--dry-run", is_flag=True,
                  help="Print the plan (waves, times, nodes) and act on nothing.")
    @click.option("--batch", type=click.IntRange(1, plan.MAX_BATCH), metavar="N",
                  help="At most N nodes a wave ([power] wave_size for on, cycle, reset; "
                       "off: all at once).")
    @click.option("--interval", type=click.FloatRange(0, plan.MAX_INTERVAL), metavar="S",
                  help="Seconds between waves ([power] wave_interval), at most an hour.")
    @click.option("--spread-by", metavar="LABEL",
                  help="Fill each wave round-robin across this label's values (pdu).")
    @click.option("--yes", "-y", is_flag=True,
                  help="Do not ask for confirmation (asked over [power] confirm_over nodes).")
    @click.option("--json", "as_json", is_flag=True, help="One JSON object a node.")
    @click.argument("selection")
    @click.argument("action", type=click.Choice(POWER_ACTIONS))
    def power(config_file, no_wait, timeout, dry_run, batch, interval, spread_by, yes, as_json,
              selection, action):
        """Power nodes on, off, cycle or reset, through the workers that own
        them (this host needs no BMC access). One node: at once. Several (or
        --batch/--interval/--spread-by): a plan in waves, kept in Redis and
        run by the workers, which goes on if this command exits; `farm
        actions` lists, shows and cancels plans."""
        ctx = make_ctx(config_file)
        names = ctx.select(selection)
        if len(names) == 1 and not (dry_run or batch or interval is not None or spread_by):
            _command(ctx, "power", names[0], action, timeout, no_wait)
            return
        if dry_run:
            try:
                batch, interval = wave_settings(ctx.settings.power, action, len(names), batch,
                                                interval)
            except Refused as exc:
                raise click.ClickException(f"{exc}; nothing changed") from None
            try:
                labels = ctx.store.labels_of(names) if spread_by else {}
            except BACKEND_ERRORS as exc:
                raise click.ClickException(str(exc)) from None
            steps = plan.waves(names, batch, interval, time.time(), spread_by, labels.get)
            _print_plan(steps, action, batch, interval, spread_by, labels, as_json)
            return
        cli_actions.start(ctx, names, action, batch, interval, spread_by, yes, no_wait, as_json,
                          timeout, who())

    @nodes.command("sel-clear")
    @config_option
    @click.option("--no-wait", is_flag=True, help="Return once the commands are queued.")
    @click.option("--timeout", type=click.FloatRange(1, 600), default=30.0, show_default=True)
    @click.confirmation_option(prompt="Erase the System Event Log of these BMCs?")
    @click.argument("selection")
    def sel_clear(config_file, no_wait, timeout, selection):
        """Erase the selected nodes' System Event Logs (farm never does on
        its own), each through the worker that owns the node."""
        ctx = make_ctx(config_file)
        names = ctx.select(selection)
        if len(names) == 1:
            _command(ctx, "sel-clear", names[0], None, timeout, no_wait)
            return
        _commands(ctx, "sel-clear", names, timeout, no_wait)

    @main.command()
    @config_option
    @click.option("--follow", "-f", is_flag=True, help="Keep printing new events until Ctrl-C.")
    @click.option("--node", help="Only the events of these nodes (a selection).")
    @click.option("--type", "kind", type=click.Choice(sorted(EVENT_TYPES)),
                  help="power (power, failing, recovered), sensor, sel (sel, sel-cleared), "
                       "action (action, desired, maintenance).")
    @click.option("--limit", type=click.IntRange(1), default=50, show_default=True,
                  help="How many of the latest events to show first.")
    @click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
    def events(config_file, follow, node, kind, limit, as_json):
        """The event stream: power changes, failures, sensor threshold
        crossings, SEL entries, actions. Capped at [events] max_len."""
        ctx = make_ctx(config_file)
        try:
            if node is not None:
                node = set(ctx.select(node))
            shown = recent_events(ctx.store, limit, node, kind)
            last = shown[-1][0] if shown else None
            for entry in shown:
                _print_event(entry, as_json)
            if not follow:
                return
            last = last or "$"
            while True:
                for entry in ctx.store.events_after(last, 1000):
                    last = entry[0]
                    if event_matches(entry[1], node, kind):
                        _print_event(entry, as_json)
        except BACKEND_ERRORS as exc:
            raise click.ClickException(str(exc)) from None
        except KeyboardInterrupt:
            pass


def _print_plan(steps, action, batch, interval, spread_by, labels, as_json):
    if as_json:
        for s in steps:
            click.echo(json.dumps({"node": s.node, "action": action, "wave": s.wave,
                                   "not_before": round(s.not_before, 3)}))
        return
    count, nodes, span = plan.summary(steps)
    click.echo(f"dry run: power {action} on {nodes} nodes in {count} waves of at most {batch}, "
               f"{interval:g} s apart ({span:g} s in all){f', spread by {spread_by}' if spread_by else ''}; "
               f"nothing was sent")
    for wave in range(count):
        members = [s for s in steps if s.wave == wave]
        shown = ", ".join(s.node + (f" ({labels.get(s.node, {}).get(spread_by, '-')})"
                                    if spread_by else "") for s in members[:8])
        more = f" and {len(members) - 8} more" if len(members) > 8 else ""
        click.echo(f"  wave {wave + 1:>3}  {when(members[0].not_before)}  {len(members):>4} nodes: "
                   f"{shown}{more}")


def _commands(ctx, kind, names, timeout, no_wait):
    """One command a node, all sent before any reply is awaited; a table of
    the failures, and exit 1 if any."""
    store, sent, failed = ctx.store, {}, {}
    try:
        now = store.server_time()
        owned = owners(store, names)
        for name in names:
            owner, why = owned[name]
            if owner is None:
                failed[name] = why
                continue
            sent[name] = send_command(store, owner, kind, name, None, who(), timeout, now)
        if not no_wait:
            deadline = time.monotonic() + timeout
            for name, command_id in sent.items():
                reply = store.wait_reply(command_id, max(1.0, deadline - time.monotonic()))
                if reply is None:
                    failed[name] = f"no answer within {timeout:g} s"
                elif not reply.get("ok"):
                    failed[name] = reply.get("error")
    except BACKEND_ERRORS as exc:
        raise click.ClickException(f"{exc}; {len(sent)} commands were sent") from None
    ok = sum(1 for n in sent if n not in failed)
    click.echo(f"{kind}: {ok} of {len(names)} nodes {'sent' if no_wait else 'done'}")
    if failed:
        click.echo(f"{'NODE':<24} ERROR")
        for name, why in sorted(failed.items()):
            click.echo(f"{name:<24} {why}")
        sys.exit(1)


def _command(ctx, kind, name, action, timeout, no_wait):
    store = ctx.store
    what = f"power {action}" if kind == "power" else "SEL clear"
    try:
        if not store.nodes_named([name]):
            raise click.ClickException(f"no node named {name}")
        owner, why = owner_of(store, name)
        if owner is None:
            raise click.ClickException(f"cannot {what} {name}: {why}")
        controls = store.controls_of([name])
        if kind == "power" and against_desired(controls, [name], action):
            click.echo(f"note: {name} keeps desired {controls[name]['desired']}: farm turns it "
                       f"back once this is done (`farm nodes desired {name} none` stops that)",
                       err=True)
        command = send_command(store, owner, kind, name, action, who(), timeout)
        if no_wait:
            click.echo(f"{what} of {name} sent to worker {owner} (command {command}); "
                       f"`farm events --node {name} --type action` shows the outcome")
            return
        reply = store.wait_reply(command, timeout)
    except BACKEND_ERRORS as exc:
        raise click.ClickException(str(exc)) from None
    if reply is None:
        raise click.ClickException(f"no answer from worker {owner} within {timeout:g} s; "
                                   f"the command expires unrun if it has not started")
    if not reply.get("ok"):
        raise click.ClickException(f"{what} of {name} failed: {reply.get('error')}")
    click.echo(f"{name}: {what} done by worker {owner} in {reply.get('latency') or 0:.2f} s")


def _print_event(entry, as_json):
    entry_id, fields = entry
    at = int(entry_id.split("-")[0]) / 1000
    if as_json:
        click.echo(json.dumps(dict(fields, id=entry_id, recorded_at=at), sort_keys=True))
        return
    rest = " ".join(f"{k}={v}" for k, v in sorted(fields.items())
                    if k not in ("node", "type", "at") and v != "")
    click.echo(f"{when(at)}  {fields.get('node', '-'):<20} {fields.get('type', '?'):<11} {rest}")
    click.get_text_stream("stdout").flush()


def render_detail(d):
    """`farm nodes show` as text (pure)."""
    node, state, control = d["node"], d["state"], d["control"]
    where = node["address"] if node.get("driver") == "redfish" else f"{node['address']}:{node['port']}"
    lines = [f"{node['name']}  {where}  {node.get('driver', 'ipmi')}  user {node['username'] or '-'}"
             f"  site {node.get('site', 'default')}",
             f"power: {state.get('power_state') or 'unknown'}   desired: "
             f"{control.get('desired') or 'none'}   maintenance: {control.get('maintenance') or 'off'}",
             f"polled: {when(state.get('seen_at') or state.get('polled_at'))}   "
             f"last ok: {when(state.get('last_ok_at'))}   worker: {state.get('worker') or '-'}"]
    if node.get("labels"):
        lines.append("labels: " + " ".join(f"{k}={v}" for k, v in sorted(node["labels"].items())))
    settings = [f"{k.replace('_', ' ')} {','.join(map(str, v)) if isinstance(v, list) else v}"
                for k, v in node.items() if k in ("cipher_suites", "privilege", "workarounds", "kg")]
    session = state.get("ipmi_session", "").split()
    if session:
        names = {"2": "user", "3": "operator", "4": "administrator"}
        settings.append(f"last login: suite {session[0]} at {names.get(session[1], session[1])}")
    if settings:
        lines.append("ipmi: " + "   ".join(settings))
    device = json.loads(state.get("bmc_device") or "null") or {}
    about = [f"{k} {device[f]}" for k, f in (("firmware", "firmware"),
                                             ("manufacturer", "manufacturer"),
                                             ("system firmware", "system_firmware")) if device.get(f)]
    if as_float(state.get("power_watts")) is not None:  # not "inactive" or "unsupported"
        about.append(f"power draw {float(state['power_watts']):g} W (DCMI)")
    if about:
        lines.append("bmc: " + "   ".join(about))
    for task, message in (("", "last_error"), ("sensors_", "sensors_error"), ("sel_", "sel_error")):
        if state.get(f"{task}error_kind"):
            label = task.rstrip("_") or "power"
            lines.append(f"{label} error ({state[f'{task}error_kind']}): {state.get(message)}")
    if d["sensors"]:
        lines.append(f"sensors (read {when(state.get('sensors_polled_at'))}):")
        for key, r in sorted(d["sensors"].items()):
            value = "-" if r.get("value") is None else f"{r['value']:g} {r.get('unit') or ''}".strip()
            extra = ", ".join(r.get("state") or [])
            lines.append(f"  {key:<20} {r.get('type', ''):<14} {value:<16} {r.get('status')}"
                         + (f"  {extra}" if extra else ""))
    if d["sel"]:
        lines.append(f"latest SEL entries (read {when(state.get('sel_polled_at'))}):")
        for e in d["sel"]:
            lines.append(f"  {e.get('id'):>5}  {when(e.get('at'))}  {e.get('sensor_type', '-'):<16} "
                         f"{e.get('description', '')}  {e.get('direction', '')}")
    return "\n".join(lines)
