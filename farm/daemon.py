"""What farm's daemons share at their edge: configuration, logging, signals,
their tooz membership and a bounded shutdown."""

import logging
import os
import resource
import signal
import threading
import time

import click

from farm import conf, errors, logs, metrics
from farm.coordination import backend
from farm.coordination.membership import Membership, redis_coordinator, tooz_options, url_coordinator

LOG = logging.getLogger("farm")


def start(config_file, overrides=None, config_dir=None):
    """Settings for a daemon, with logging set up; a bad config exits with a message."""
    try:
        settings = conf.load(config_file, overrides, config_dir)
    except errors.ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    logs.setup(settings.logging.level, settings.logging.format)
    open_files = more_open_files()
    LOG.info("open files: at most %s", open_files)
    return settings


def more_open_files():
    """Raise the soft limit on open files to the hard one, as servers do: a
    worker keeps a connection per Redfish BMC, and a shell's soft limit
    (1,024) is far below the hard one. What the limit is now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError) as exc:
            LOG.warning("open files stay at most %d (%s)", soft, exc)
    return soft


EXIT_CLEAN, EXIT_UNCLEAN, EXIT_REFUSED, EXIT_FORCED = 0, 1, 2, 3
LOOP_GRACE = 2.0  # how long shutdown waits for the loop's current step


def serve(name, loop, stopping, shutdown):
    """Run `loop` beside the main thread until `stopping` (an Event) is set,
    then `shutdown()` (a Shutdown), and end the process with its exit code.
    The loop is not in the main thread so that a step blocked on a paused
    Redis (up to its socket timeout) cannot hold the shutdown back."""
    code, fatal = EXIT_UNCLEAN, []
    try:
        thread = threading.Thread(target=_logged(loop, fatal), name=f"{name}-loop", daemon=True)
        thread.start()
        while not stopping.wait(0.5) and thread.is_alive():
            pass
        died = not stopping.is_set()
        if died and not fatal:
            LOG.error("%s: its loop ended on its own; stopping", name)
        thread.join(LOOP_GRACE)
        LOG.info("%s stopping", name)
        code = shutdown().exit_code
        if died:
            code = EXIT_REFUSED if fatal else EXIT_UNCLEAN
    finally:
        LOG.info("%s stopped (exit code %d)", name, code)
        finish(code)


def _logged(fn, fatal):
    def run():
        try:
            fn()
        except (errors.BackendRefused, errors.ConfigError, errors.CredentialsError) as exc:
            # one clear line: a traceback every few seconds helps nobody
            LOG.error("cannot run: %s", exc)
            fatal.append(exc)
        except Exception:
            LOG.exception("the main loop failed")
    return run


def serve_metrics(registry, settings, port):
    """The daemon's metrics endpoint, if [metrics] enabled; one line and exit
    1 if it cannot be served (a daemon nobody can watch should not run)."""
    if not settings.metrics.enabled:
        return None
    try:
        return metrics.serve(registry, settings.metrics, port)
    except errors.ConfigError as exc:
        raise click.ClickException(str(exc)) from None


def on_stop_signals(callback, budget):
    """SIGTERM and SIGINT only call `callback` (which sets a flag); one loop
    acts. From the first signal the process has `budget` seconds to exit: a
    watchdog then ends it (EXIT_FORCED), as does a second signal, so no step
    that hangs on a dead or paused Redis can keep a stopped daemon alive."""
    state = {"signalled": False}

    def handler(signum, _frame):
        if state["signalled"]:
            _force(f"second {signal.Signals(signum).name}: exiting now")
        state["signalled"] = True
        callback()
        threading.Thread(target=_watchdog, args=(budget,), name="farm-exit-watchdog",
                         daemon=True).start()
    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def _watchdog(budget):
    time.sleep(budget)
    _force(f"shutdown did not finish within {budget:g} s: exiting now")


def _force(why):
    LOG.error("%s (exit code %d)", why, EXIT_FORCED)
    finish(EXIT_FORCED)


def finish(code):
    """Flush the logs and end the process with `code`, whatever threads a
    library left behind (tooz's heartbeat retries for ever without Redis)."""
    try:
        logging.shutdown()
    finally:
        os._exit(code)


class Shutdown:
    """Runs shutdown steps, each in its own thread with its own deadline; a
    step that hangs or fails is logged and left behind. `clean` says whether
    every step finished in time without error."""

    def __init__(self):
        self.clean = True

    def run(self, steps, timeout):
        """Run `steps` ({name: callable}) side by side; wait at most `timeout` s."""
        threads, failed = [], []

        def call(name, fn):
            try:
                if fn() is False:
                    failed.append(f"{name}: did not finish")
            except Exception as exc:
                failed.append(f"{name}: {type(exc).__name__}: {exc}")
        for name, fn in steps.items():
            t = threading.Thread(target=call, args=(name, fn), name=f"farm-stop-{name}", daemon=True)
            t.start()
            threads.append((name, t))
        deadline = time.monotonic() + timeout
        for name, t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
            if t.is_alive():
                failed.append(f"{name}: still running after {timeout:g} s")
        for why in failed:
            LOG.warning("shutdown step %s", why)
        self.clean = self.clean and not failed
        return not failed

    @property
    def exit_code(self):
        return EXIT_CLEAN if self.clean else EXIT_UNCLEAN


def membership(settings, my_id, start_timeout, lock_timeout=None):
    """tooz on [coordination] tooz_url if set (etcd3, zookeeper...), else on
    backend_url's Redis with the same credentials and TLS as farm's state."""
    c = settings.coordination
    defaults = tooz_options(c.namespace, c.membership_timeout, c.leader_timeout,
                            lock_timeout=lock_timeout)
    if c.tooz_url and not c.tooz_url.startswith("redis"):
        def connect(member):
            return url_coordinator(c.tooz_url, member)
        where = backend.redact(c.tooz_url)
    else:
        b = backend.parse(c.tooz_url or c.backend_url)
        where = b.where

        def connect(member):
            return redis_coordinator(b, member, defaults)
    return Membership(connect, my_id, where, start_timeout=start_timeout)


def keep_running(step, wait, stopping, tick, outage_message, on_trouble=lambda: None):
    """Call step() every `tick` seconds until stopping().

    BackendRefused and ConfigError end the loop (the daemon exits 2). A
    Redis outage is logged once (`outage_message()` says what that means for
    this daemon) and retried with backoff from 0.5 s up to 10 s; any other
    exception is logged with its traceback and retried after 5 s, so no bug
    stops a daemon. `on_trouble` runs on either (a coordinator steps down).
    `wait(seconds)` sleeps until the next step or an early wake-up.
    """
    delay, outage = tick, False
    while not stopping():
        try:
            step()
            if outage:
                LOG.warning("Redis is reachable again")
            delay, outage = tick, False
        except (errors.BackendRefused, errors.ConfigError, errors.CredentialsError):
            raise  # retrying cannot fix these: the daemon exits (EXIT_REFUSED)
        except errors.BackendUnavailable as exc:
            if not outage:
                LOG.error("%s: %s", outage_message(), exc)
            on_trouble()
            delay = min(delay * 2, 10.0) if outage else 0.5
            outage = True
        except Exception:
            LOG.exception("%s failed; retrying", getattr(step, "__name__", "step"))
            on_trouble()
            delay = 5.0
        try:
            wait(delay)
        except Exception:  # (it refreshes metrics too): a bug there must not stop the daemon
            LOG.exception("waiting for the next %s failed", getattr(step, "__name__", "step"))
            time.sleep(min(delay, 1.0))
