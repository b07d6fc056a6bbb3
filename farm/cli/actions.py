"""Bulk power as a record in Redis (farm.store.actions), and `farm actions`:
the CLI writes the plan and follows it; the owning workers run its steps
(farm.power.steps), so a plan goes on when the CLI exits or is killed.
Registered on farm.cli."""

import json
import math
import sys
import time
import uuid

import click

from farm import errors
from farm.fleet.views import Refused, plan_action, write_action
from farm.power import plan

BACKEND_ERRORS = (errors.BackendUnavailable, errors.BackendRefused)
LEAD = 2.0     # seconds from writing a plan to its first wave: the workers hear of it, read
#                their steps and take the first ones a second ahead (farm.power.steps.LEAD)
FOLLOW = 0.5   # seconds between two looks at a running action


def start(ctx, names, action, batch, interval, spread_by, yes, no_wait, as_json, timeout, by):
    """Write the plan for `names`, then follow it unless `no_wait`."""
    store = ctx.store
    try:
        steps, batch, interval, notes = plan_action(store, ctx.settings.power, names, action,
                                                    batch, interval, spread_by)
    except Refused as exc:
        raise click.ClickException(f"{exc}; nothing changed") from None
    except BACKEND_ERRORS as exc:
        raise click.ClickException(f"{exc}; nothing changed") from None
    count, _, span = plan.summary(steps)
    if len(names) > ctx.settings.power.confirm_over and not yes:
        click.confirm(f"power {action} {len(names)} nodes in {count} waves of at most {batch}, "
                      f"{interval:g} s apart ({span:g} s)?", abort=True, err=True)
    action_id = uuid.uuid4().hex[:12]
    try:
        write_action(store, action_id, steps, action, batch, interval, spread_by, by, LEAD)
    except (Refused, *BACKEND_ERRORS) as exc:
        raise click.ClickException(f"{exc}; nothing changed") from None
    click.echo(f"action {action_id}: power {action} on {len(names)} nodes in {count} waves "
               f"({span:g} s)", err=True)
    for note in notes:
        click.echo(f"note: {note}", err=True)
    if no_wait:
        click.echo(action_id)
        return
    follow(store, action_id, timeout, as_json)


def follow(store, action_id, timeout, as_json):
    """Show an action's progress until it ends (or `timeout` seconds past
    its last wave), then its failures; exit 1 if any node failed or was
    cancelled. Ctrl-C stops watching only."""
    tty = sys.stderr.isatty()
    shown, shown_at = None, 0.0
    try:
        while True:
            record, now = store.action(action_id), store.server_time()
            if record is None:
                raise click.ClickException(f"no action {action_id} (finished ones expire after "
                                           f"a week)")
            line = progress(record, now)
            if tty:
                click.echo(f"\r{line}\033[K", nl=False, err=True)
            elif line != shown and (time.monotonic() - shown_at >= 2 or finished(record)):
                click.echo(line, err=True)
                shown, shown_at = line, time.monotonic()
            if finished(record):
                break
            if now > record["last_at"] + timeout:
                if tty:
                    click.echo(err=True)
                raise click.ClickException(
                    f"action {action_id}: {record['pending'] + record['running']} steps not done "
                    f"{timeout:g} s after its last wave (no live worker owns them?); it goes "
                    f"on: `farm actions show {action_id}`, `farm actions cancel {action_id}`")
            time.sleep(FOLLOW)
    except KeyboardInterrupt:
        click.echo(f"\nstopped watching; action {action_id} goes on: `farm actions show "
                   f"{action_id}`, `farm actions cancel {action_id}`", err=True)
        sys.exit(130)
    except BACKEND_ERRORS as exc:
        raise click.ClickException(f"{exc}; action {action_id} goes on in the workers") from None
    if tty:
        click.echo(err=True)
    steps = store.action_steps(action_id)
    if as_json:
        for name, step in steps.items():
            click.echo(json.dumps(dict(step, node=name, action=record["action"],
                                       action_id=action_id), sort_keys=True))
    failed = {n: s for n, s in steps.items() if s["state"] == "failed"}
    if failed and not as_json:
        click.echo(f"{'NODE':<24} {'WORKER':<28} ERROR")
        for name, s in failed.items():
            click.echo(f"{name:<24} {s.get('worker', '-'):<28} {s.get('error', '')}")
    if record["failed"] or record["cancelled"]:
        sys.exit(1)


def finished(record):
    return record["pending"] + record["running"] == 0


def progress(record, now):
    """One line: nodes done, failed, left, waves left (pure)."""
    total, done, failed = record["total"], record["done"], record["failed"]
    interval = record["interval"]
    waves_left = 0
    if interval > 0 and now < record["last_at"]:
        waves_left = min(record["waves"], math.ceil((record["last_at"] - now) / interval))
    width = 30
    filled = int(width * (done + failed + record["cancelled"]) / total) if total else width
    bar = "#" * filled + "." * (width - filled)
    extra = f", {record['cancelled']} cancelled" if record["cancelled"] else ""
    return (f"[{bar}] power {record['action']}: {done}/{total} done, {failed} failed"
            f"{extra}, {record['pending'] + record['running']} left, {waves_left} waves left")


def when(ts):
    """An epoch time as local date and time, or - (pure)."""
    return "-" if not ts else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(ts)))


def register(main, make_ctx, config_option, who):
    @main.group()
    def actions():
        """Bulk power actions: list, show, follow and cancel them."""

    @actions.command("list")
    @config_option
    @click.option("--limit", type=click.IntRange(1), default=20, show_default=True)
    @click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
    def list_(config_file, limit, as_json):
        """The newest actions, newest first."""
        ctx = make_ctx(config_file)
        try:
            records = ctx.store.actions(limit)
        except BACKEND_ERRORS as exc:
            raise click.ClickException(str(exc)) from None
        if as_json:
            for r in records:
                click.echo(json.dumps(r, sort_keys=True))
            return
        click.echo(f"{'ID':<13} {'ACTION':<6} {'STATE':<9} {'CREATED':<19} {'NODES':>6} "
                   f"{'DONE':>6} {'FAILED':>6} {'LEFT':>6}  BY")
        for r in records:
            click.echo(f"{r['id']:<13} {r['action']:<6} {r['state']:<9} {when(r['created']):<19} "
                       f"{r['total']:>6} {r['done']:>6} {r['failed']:>6} "
                       f"{r['pending'] + r['running']:>6}  {r['by']}")

    @actions.command("show")
    @config_option
    @click.option("--json", "as_json", is_flag=True, help="One JSON object: the action and "
                  "each node's step.")
    @click.argument("action_id")
    def show(config_file, as_json, action_id):
        """An action and each node's step: pending, running, done, failed
        (with the error) or cancelled."""
        ctx = make_ctx(config_file)
        try:
            record = ctx.store.action(action_id)
            steps = ctx.store.action_steps(action_id) if record else {}
        except BACKEND_ERRORS as exc:
            raise click.ClickException(str(exc)) from None
        if record is None:
            raise click.ClickException(f"no action {action_id} (finished ones expire after a week)")
        if as_json:
            click.echo(json.dumps({"action": record, "nodes": steps}, sort_keys=True))
            return
        spread = f", spread by {record['spread_by']}" if record.get("spread_by") else ""
        click.echo(f"action {record['id']}: power {record['action']} by {record['by']}, "
                   f"created {when(record['created'])}, {record['state']}")
        click.echo(f"  {record['total']} nodes in {record['waves']} waves of at most "
                   f"{record['batch']}, {record['interval']:g} s apart{spread}")
        click.echo(f"  {progress(record, ctx.store.server_time())}")
        click.echo(f"{'NODE':<24} {'WAVE':>4} {'STATE':<9} {'NOT BEFORE':<19} {'ENDED':<19} "
                   f"{'WORKER':<28} ERROR")
        rows = []
        for name, s in steps.items():
            rows.append(f"{name:<24} {s['wave'] + 1:>4} {s['state']:<9} "
                        f"{when(s['not_before']):<19} {when(s.get('ended_at')):<19} "
                        f"{s.get('worker', '-'):<28} {s.get('error', '')}")
        click.echo("\n".join(rows))

    @actions.command("wait")
    @config_option
    @click.option("--timeout", type=click.FloatRange(1), default=60.0, show_default=True,
                  help="Seconds past the action's last wave to wait for its last steps.")
    @click.option("--json", "as_json", is_flag=True, help="At the end, one object a node.")
    @click.argument("action_id")
    def wait(config_file, timeout, as_json, action_id):
        """Follow an action until it ends (as `farm nodes power` does without
        --no-wait); exit 1 if any node failed or was cancelled."""
        ctx = make_ctx(config_file)
        follow(ctx.store, action_id, timeout, as_json)

    @actions.command("cancel")
    @config_option
    @click.argument("action_id")
    def cancel(config_file, action_id):
        """Drop the steps not started; the ones running end as they will."""
        ctx = make_ctx(config_file)
        try:
            before, dropped = ctx.store.cancel_action(action_id, who())
        except BACKEND_ERRORS as exc:
            raise click.ClickException(str(exc)) from None
        if before is None:
            raise click.ClickException(f"no action {action_id}")
        if before != "running":
            raise click.ClickException(f"action {action_id} is {before} already; nothing changed")
        click.echo(f"action {action_id} cancelled: {dropped} steps dropped; the ones running "
                   f"end as they will")
