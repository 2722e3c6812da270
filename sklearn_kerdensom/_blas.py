"""How many threads BLAS runs on, and the threads that run a pass's chunks."""

from concurrent.futures import ThreadPoolExecutor
from functools import cache

from threadpoolctl import ThreadpoolController


@cache
def _threadpool_controller():
    return ThreadpoolController()


def single_threaded_blas():
    """Context with BLAS on one thread (process-wide, restored on exit).

    For node-sized products and solves, which are slower on several threads, and
    for passes whose blocks already run in parallel on Dask's local threads.
    """
    return _threadpool_controller().limit(limits=1, user_api="blas")


def map_in_threads(function, items, n_threads):
    """``[function(item) for item in items]``, on up to ``n_threads`` threads, in order, BLAS on one
    thread (process-wide, while it runs).

    The passes run their chunks this way, each chunk's products on one BLAS thread (the scheme of
    scikit-learn's KMeans): BLAS's own threads spin at every small product's barrier, and on a
    machine whose cores are busy with other work a pass then waits for the slowest of them.
    """
    items = list(items)
    with single_threaded_blas():
        if n_threads <= 1 or len(items) <= 1:
            return [function(item) for item in items]
        return list(_thread_pool(n_threads).map(function, items))


@cache
def _thread_pool(n_threads):
    """One pool per number of threads, kept for the process: a fit makes hundreds of passes, and
    starting threads for each cost more than a small pass itself (measured on a busy machine)."""
    return ThreadPoolExecutor(n_threads, thread_name_prefix="kerdensom")
