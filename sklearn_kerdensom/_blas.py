"""How many threads BLAS runs on."""

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
