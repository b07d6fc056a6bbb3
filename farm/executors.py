"""The pools polls run on, behind one futures.Executor that futurist's
PeriodicWorker submits to.

futurist's PeriodicWorker discards return values and, with a process pool,
hangs silently when a call cannot be pickled or a child dies (its done
callback re-raises, so the callable is never rescheduled). ResultExecutor runs
each periodic call itself, hands its return value to `on_result` in the parent,
turns every pool failure into a futurist Failure the worker logs and
reschedules, and replaces a broken process pool.
"""

import logging
import multiprocessing
import signal
import threading
import time
import traceback
from concurrent import futures
from concurrent.futures import process as cf_process

import futurist
from futurist import _utils as futurist_utils

LOG = logging.getLogger(__name__)


class TaskFailed(Exception):
    """A periodic call failed where its own exception could not reach us."""


def run_call(callback):
    """Runs in the pool (thread or child): (started, finished, result, error)."""
    started = time.monotonic()
    try:
        result, error = callback(), None
    except Exception as exc:
        result = None
        error = f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=5)}"
    # monotonic clocks differ between processes; report durations instead
    return started, time.monotonic() - started, result, error


def _failure(message):
    try:
        raise TaskFailed(message)
    except TaskFailed:
        return futurist_utils.Failure(False)


def _child_init():
    # A Ctrl-C reaches the whole foreground process group; the parent decides
    # when children stop. SIGTERM keeps its default: a broken pool terminates
    # its remaining children with it and joins them (ignoring it hangs that
    # join, and with it the worker's exit). systemd units use KillMode=mixed
    # so a stop signals only the parent.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def make_pool(kind, size):
    if kind == "threads":
        return futurist.ThreadPoolExecutor(max_workers=size)
    # spawn, never fork: a child forked after pyghmi started its IO thread hangs.
    pool = futurist.ProcessPoolExecutor(max_workers=size,
                                        mp_context=multiprocessing.get_context("spawn"))
    # futurist does not pass an initializer through; children start lazily,
    # so setting CPython's attribute before the first submit is enough.
    pool._initializer = _child_init
    return pool


class ResultExecutor(futures.Executor):

    def __init__(self, kind, size, on_result):
        self.kind = kind
        self.size = size
        self._on_result = on_result
        self._lock = threading.Lock()
        self._pool = make_pool(kind, size)
        self._in_flight = 0
        self.pool_restarts = 0
        self._closed = False

    @property
    def in_flight(self):
        return self._in_flight

    def submit(self, fn, *args, **kwargs):
        # PeriodicWorker submits runner.run(work); we run work.callback ourselves.
        (work,) = args
        callback = work.callback
        outer = futures.Future()
        outer.set_running_or_notify_cancel()
        submitted = time.monotonic()
        with self._lock:
            if self._closed:
                raise futurist.RejectedSubmission("executor is shut down")
            pool = self._pool
            self._in_flight += 1
        try:
            inner = pool.submit(run_call, callback)
        except (RuntimeError, cf_process.BrokenProcessPool) as exc:
            with self._lock:
                self._in_flight -= 1
            self._replace(pool, exc)
            raise futurist.RejectedSubmission(str(exc)) from None
        inner.add_done_callback(lambda f: self._done(f, outer, callback, pool, submitted))
        return outer

    def _done(self, inner, outer, callback, pool, submitted):
        with self._lock:
            self._in_flight -= 1
        now = time.monotonic()
        try:
            started, elapsed, result, error = inner.result()
        except BaseException as exc:  # pickling errors, a dead child, cancellation
            if isinstance(exc, cf_process.BrokenProcessPool):
                self._replace(pool, exc)
            message = f"{type(exc).__name__}: {exc}"
            self._report(callback, None, message)
            outer.set_result((submitted, now, _failure(message)))
            return
        self._report(callback, result, error)
        # started is in the pool's clock; rebase onto ours for the scheduler
        started_here = max(submitted, now - elapsed)
        failure = _failure(error) if error else None
        outer.set_result((started_here, now, failure))

    def _report(self, callback, result, error):
        try:
            self._on_result(callback, result, error)
        except Exception:
            LOG.exception("handling a poll result failed")

    def _replace(self, broken, exc):
        with self._lock:
            if self._pool is not broken or self._closed:
                return
            LOG.error("process pool broke (%s); starting a new one", exc)
            self._pool = make_pool(self.kind, self.size)
            self.pool_restarts += 1
        broken.shutdown(wait=False, cancel_futures=True)

    def shutdown(self, wait=True, *, cancel_futures=False):
        with self._lock:
            self._closed = True
            pool = self._pool
        pool.shutdown(wait=wait, cancel_futures=cancel_futures)
