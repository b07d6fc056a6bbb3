"""What farm's daemons share at their edge: configuration, logging, signals,
and their tooz membership."""

import signal

import click

from farm import conf, errors, logs
from farm.membership import Membership, tooz_url


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
