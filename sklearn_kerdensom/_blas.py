"""How many threads BLAS runs on, and the threads that run a pass's chunks."""

import os
import threading
from collections import deque
from contextlib import contextmanager
from functools import cache

from threadpoolctl import ThreadpoolController

# Chunks submitted ahead of the one being added up, per thread: enough to keep every thread busy, few
# enough that a pass holds a bounded number of chunk results (each up to n_nodes x n_features).
_CHUNKS_AHEAD_PER_THREAD = 2


@cache
def _threadpool_controller():
    return ThreadpoolController()


class _SharedBlasLimit:
    """One process-wide limit of BLAS to one thread, held while any caller needs it.

    threadpoolctl's limits restore the settings they found when they are left, so two that overlap in
    different threads (fits in threads, e.g. GridSearchCV's threading backend) would leave BLAS on one
    thread for good when they are left in the order they were entered. Counting the callers applies the
    limit once, when the first enters, and restores the original settings when the last leaves.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._users = 0
        self._limiter = None

    @contextmanager
    def held(self):
        with self._lock:
            if self._users == 0:
                self._limiter = _threadpool_controller().limit(limits=1, user_api="blas")
            self._users += 1
        try:
            yield
        finally:
            with self._lock:
                self._users -= 1
                if self._users == 0:
                    self._limiter.restore_original_limits()
                    self._limiter = None


_BLAS_LIMIT = _SharedBlasLimit()


def single_threaded_blas():
    """Context with BLAS on one thread (process-wide, restored when the last such context is left).

    For node-sized products and solves, which are slower on several threads, for the chunks of a pass
    (:func:`map_in_threads`), and for passes whose blocks already run in parallel on Dask's local threads.
    """
    return _BLAS_LIMIT.held()  # the module's current limit (a forked child gets a new one)


def map_in_threads(function, items, n_threads):
    """``function(item)`` of every item, yielded in order, computed on up to ``n_threads`` threads with
    BLAS on one thread (process-wide, while the results are consumed).

    The passes run their chunks this way, each chunk's products on one BLAS thread (the scheme of
    scikit-learn's KMeans): BLAS's own threads spin at every small product's barrier, and on a machine
    whose cores are busy with other work a pass then waits for the slowest of them (measured: a default
    fit of 2000 images took 12.5 s with two BLAS threads under load, 7.3 s with one). At most
    ``_CHUNKS_AHEAD_PER_THREAD * n_threads`` results wait to be consumed, so a pass that adds them up
    holds a bounded number of them whatever the number of chunks.
    """
    with single_threaded_blas():
        if n_threads <= 1:
            for item in items:
                yield function(item)
            return
        pool = _thread_pool(n_threads)
        pending = deque()
        try:
            for item in items:
                pending.append(pool.submit(function, item))
                if len(pending) >= _CHUNKS_AHEAD_PER_THREAD * n_threads:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()


@cache
def _thread_pool(n_threads):
    """One pool per number of threads, kept for the process: a fit makes hundreds of passes, and
    starting threads for each cost more than a small pass itself (measured on a busy machine)."""
    from concurrent.futures import ThreadPoolExecutor

    return ThreadPoolExecutor(n_threads, thread_name_prefix="kerdensom")


def _after_fork_in_child():
    # A forked child inherits the pools but not their threads (its tasks would never run), and possibly
    # a lock held by a thread that does not exist in it.
    global _BLAS_LIMIT
    _thread_pool.cache_clear()
    _BLAS_LIMIT = _SharedBlasLimit()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
