"""Signal handlers of the command line: what a run does when it is told to stop."""

import signal
from contextlib import contextmanager

# Ctrl-C, a job scheduler's or the system's SIGTERM, and SIGHUP when the terminal or ssh session closes.
STOPPING = (signal.SIGINT, signal.SIGTERM, *((signal.SIGHUP,) if hasattr(signal, "SIGHUP") else ()))


@contextmanager
def handled(numbers, handler):
    """``handler`` for the signals ``numbers`` while active, the previous handlers restored after.

    Yields whether the handlers were set: only the main thread can set them.
    """
    try:
        previous = {number: signal.signal(number, handler) for number in numbers}
    except ValueError:
        yield False
        return
    try:
        yield True
    finally:
        for number, earlier in previous.items():
            signal.signal(number, earlier)


@contextmanager
def deferred(numbers=STOPPING):
    """The signals ``numbers`` wait while active (a step that must not be cut in two), then reach the
    handlers in place after it.

    The handlers are swapped, not the signal mask: a signal sent to the process may be delivered to any
    of its threads (BLAS's among them), so blocking it in this thread would not hold it back.
    """
    received = []
    with handled(numbers, lambda number, frame: received.append(number)):
        yield
    for number in received:
        signal.raise_signal(number)
