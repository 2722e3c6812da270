"""The progress of a fit, reported to whoever asked for it (the command line's progress bar).

A context-local callback rather than an estimator parameter: progress is a property of the run, not of
the model, and must not show in ``get_params``.
"""

from contextlib import contextmanager
from contextvars import ContextVar

_CALLBACK = ContextVar("sklearn_kerdensom_fit_progress", default=None)


@contextmanager
def reporting(callback):
    """Within the block, every inner iteration of a fit calls ``callback(step, n_steps, iteration,
    max_iter, step_done)``: the annealing step (from 0), how many there are, the iterations done in
    this step, its cap, and whether the step has stopped."""
    token = _CALLBACK.set(callback)
    try:
        yield
    finally:
        _CALLBACK.reset(token)


def report(step, n_steps, iteration, max_iter, step_done):
    """Tell the callback of :func:`reporting`, if any, where the fit is."""
    callback = _CALLBACK.get()
    if callback is not None:
        callback(step, n_steps, iteration, max_iter, step_done)
