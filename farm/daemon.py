"""What farm's daemons share at their edge: configuration, logging, signals,
and their tooz membership."""

import logging
import signal

import click

from farm import conf, errors, logs
from farm.membership import Membership, tooz_url

LOG = logging.getLogger("farm")


def start(config_file, overrides=None):
    """Settings for a daemon, with logging set up; a bad config exits with a message."""
    try:
        settings = conf.load(config_file, overrides)
    except errors.ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    logs.setup(settings.logging.level, settings.logging.format)
    return settings


def on_stop_signals(callback):
    """SIGTERM and SIGINT only call `callback` (which sets a flag); one loop acts."""
    signal.signal(signal.SIGTERM, lambda *_: callback())
    signal.signal(signal.SIGINT, lambda *_: callback())


def membership(settings, my_id, start_timeout):
    c = settings.coordination
    url = tooz_url(c.tooz_url or c.backend_url, c.namespace, c.membership_timeout, c.leader_timeout)
    return Membership(url, my_id, start_timeout=start_timeout)


def keep_running(step, wait, stopping, tick, outage_message, on_trouble=lambda: None):
    """Call step() every `tick` seconds until stopping().

    A Redis outage is logged once (`outage_message()` says what that means for
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
        wait(delay)
