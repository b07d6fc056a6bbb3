"""farm-worker: polls its nodes' BMCs in parallel on futurist.

Thin daemon: Worker wires the inventory, the tasks, the executor and the
result writer; main() reads configuration, installs signal handlers that only
set a flag, and runs Worker until that flag is set.
"""

import logging
import signal
import sys
import threading
import time

import click

from farm import conf, errors, logs
from farm.executors import ResultExecutor
from farm.model import PollResult
from farm.results import ResultWriter
from farm.scheduling import Scheduler
from farm.store import Store
from farm.tasks import load_tasks, power

LOG = logging.getLogger("farm.worker")


class Worker:
    def __init__(self, settings, store, task_names=None):
        self.settings = settings
        self.store = store
        self.writer = ResultWriter(store, settings.worker.result_flush_interval)
        self.executor = ResultExecutor(settings.worker.executor,
                                       settings.worker.workers_pool_size, self._on_result)
        self.tasks = [cls(settings) for cls in load_tasks(task_names).values()]
        self.scheduler = Scheduler(self.executor)
        self.inventory_version = None
        self.nodes = []

    def _on_result(self, call, result, error):
        if isinstance(result, PollResult):
            call.consecutive_failures = 0 if result.ok else call.consecutive_failures + 1
            self.writer.add(result)
        elif error is not None:
            call.consecutive_failures += 1
            summary = error.splitlines()[0][:200]
            LOG.warning("%s failed: %s", call.__name__, summary)
            node = getattr(call, "node", None)
            if node is not None:
                self.writer.add(PollResult(node=node.name, polled_at=time.time(), latency=0.0,
                                           error_kind="error", error=f"task failed: {summary}"))

    def refresh(self):
        """Re-read the inventory if it changed; rebuild the schedule. True if rebuilt."""
        version = self.store.inventory_version()
        if version == self.inventory_version:
            return False
        version, nodes = self.store.load_nodes()
        if not nodes and self.nodes and version < (self.inventory_version or 0):
            # An empty inventory under an older version is what a Redis that
            # restarted without persistence looks like, not an operator's
            # choice (an import with --replace bumps the version): keep polling.
            if self.inventory_version is not None:
                LOG.error("the inventory in Redis is empty and its version went back from %d "
                          "to %d (Redis lost its data?); polling the last known %d nodes "
                          "until it is imported again", self.inventory_version, version,
                          len(self.nodes))
            self.inventory_version = version
            return False
        calls = [c for task in self.tasks for c in task.calls(nodes)]
        self.scheduler.replace(calls, stop_timeout=self.settings.worker.bmc_timeout + 1)
        LOG.info("polling %d nodes (inventory version %d) on %d %s",
                 len(nodes), version, self.settings.worker.workers_pool_size,
                 self.settings.worker.executor)
        self.inventory_version, self.nodes = version, nodes
        return True

    def run(self, stop):
        """Poll until `stop` is set; survives Redis being away (keeps polling
        the last inventory, retries with backoff)."""
        self.writer.start()
        backoff, outage = 0.5, False
        while not stop.is_set():
            try:
                self.refresh()
                if outage:
                    LOG.warning("Redis is reachable again")
                backoff, outage = self.settings.worker.inventory_refresh_interval, False
            except errors.BackendUnavailable as exc:
                if not outage:
                    LOG.error("cannot read the inventory, polling the last one known "
                              "(%d nodes): %s", len(self.nodes), exc)
                backoff = min(backoff * 2, 30.0) if outage else 0.5
                outage = True
            stop.wait(backoff)

    def shutdown(self):
        """Stop taking new polls, let in-flight ones end (bounded by
        bmc_timeout), write their results, then log out of BMC sessions."""
        w = self.settings.worker
        if not self.scheduler.stop(w.bmc_timeout + 1):
            LOG.warning("some polls were still running at shutdown")
        self.executor.shutdown(wait=False, cancel_futures=True)
        self.writer.stop(timeout=5.0)
        power.close_clients()
        LOG.info("wrote %d poll results; %d batches failed; process pool restarts: %d",
                 self.writer.written, self.writer.failed_writes, self.executor.pool_restarts)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config-file", type=click.Path(dir_okay=False), help="oslo.config file.")
@click.option("--executor", type=click.Choice(["threads", "processes"]),
              help="Override [worker] executor.")
def main(config_file, executor):
    """Poll the power state of every node in the inventory."""
    try:
        settings = conf.load(config_file, {"worker.executor": executor} if executor else None)
    except errors.ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    logs.setup(settings.logging.level)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    store = Store(settings.coordination.backend_url, settings.coordination.namespace)
    worker = Worker(settings, store)
    LOG.info("farm-worker starting (executor=%s, pool=%d, interval=%gs, bmc_timeout=%gs)",
             settings.worker.executor, settings.worker.workers_pool_size,
             settings.worker.poll_interval, settings.worker.bmc_timeout)
    try:
        worker.run(stop)
    finally:
        LOG.info("farm-worker stopping")
        worker.shutdown()
    LOG.info("farm-worker stopped")
    sys.exit(0)
