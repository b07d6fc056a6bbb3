"""farm-api, the daemon: configuration, the tokens file, TLS, and uvicorn
serving farm.api.app on a socket bound here (so port 0 works and is logged).
SIGTERM or SIGINT: stop taking connections, finish requests in flight for
at most GRACE seconds, exit; a second signal, or a shutdown that overruns,
ends the process (farm.daemon's watchdog)."""

import gc
import logging
import socket
import ssl

import click

from farm import conf, daemon, errors
from farm.credentials import Credentials

LOG = logging.getLogger("farm.api")
GRACE = 5.0  # seconds requests in flight get after a stop signal


def listen(bind, port):
    family = socket.AF_INET6 if ":" in bind else socket.AF_INET
    # IPPROTO_TCP named: asyncio sets TCP_NODELAY only on sockets whose proto
    # says TCP, and accepted sockets inherit it. Without it every answer on a
    # kept connection waited for the client's delayed ACK (44 ms, measured
    # with wrk: 22 answers/s on one connection instead of hundreds)
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((bind, port))
    sock.listen(1024)
    return sock


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@conf.config_options
@click.option("--port", type=click.IntRange(0, 65535), help="Override [api] port (0: a free one).")
def main(config_file, config_dir, port):
    """Serve farm's HTTP API (docs/operations.md, "farm-api")."""
    import uvicorn

    from farm.api.app import create_app
    from farm.api.tokens import Tokens
    from farm.store import Store
    overrides = {"api.port": port} if port is not None else {}
    settings = daemon.start(config_file, overrides, config_dir)
    a = settings.api
    try:
        tokens = Tokens.load(a.tokens_file)
        store = Store(settings.coordination.backend_url, settings.coordination.namespace,
                      credentials=Credentials.from_settings(settings.security),
                      events_max_len=settings.events.max_len, sel_recent=settings.sel.recent)
    except errors.ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    tls = {}
    if a.tls_cert_file or a.tls_key_file:
        if not (a.tls_cert_file and a.tls_key_file):
            raise click.ClickException("[api] tls_cert_file and tls_key_file go together")
        tls = {"ssl_certfile": a.tls_cert_file, "ssl_keyfile": a.tls_key_file}
        if a.tls_client_ca_file:
            tls.update(ssl_ca_certs=a.tls_client_ca_file, ssl_cert_reqs=ssl.CERT_REQUIRED)
    elif a.tls_client_ca_file:
        raise click.ClickException("[api] tls_client_ca_file needs tls_cert_file and tls_key_file")
    try:
        sock = listen(a.bind, a.port)
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {a.bind}:{a.port}: {exc.strerror}") from None
    from farm.api.guard import Guard
    from farm.api.slowloris import with_header_timeout
    from farm.store.aio import AsyncReader
    reader = AsyncReader(settings.coordination.backend_url, settings.coordination.namespace)
    app = Guard(create_app(store, tokens, settings, reader), tokens, a.max_body_bytes)
    server = uvicorn.Server(uvicorn.Config(
        app, log_config=None, access_log=False, timeout_graceful_shutdown=GRACE,
        server_header=False, http=with_header_timeout(a.header_timeout),
        limit_concurrency=a.max_connections, **tls))
    scheme = "https" if tls else "http"
    LOG.info("farm-api listening on %s://%s:%d (%d tokens)", scheme, a.bind,
             sock.getsockname()[1], len(tokens.entries))

    def stop():
        server.should_exit = True
    daemon.on_stop_signals(stop, budget=GRACE + 5)
    try:
        # Python's cyclic GC walked every object FastAPI and pydantic made at
        # start-up, in passes of ~30 ms every few hundred requests: p99 35 ms
        # at 1,850 scrapes/s. Start-up objects frozen out of its reach, and
        # young collections rarer (answers are freed by refcount): p99 9.5 ms
        # (bench ipmi, docs/benchmarks.md section 10)
        gc.freeze()
        gc.set_threshold(50_000, 50, 100)
        server.run(sockets=[sock])
    except (ssl.SSLError, OSError) as exc:
        raise click.ClickException(f"cannot serve TLS: {exc}") from None
    finally:
        store.close()
    LOG.info("farm-api stopped")
