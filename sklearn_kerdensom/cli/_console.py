"""What a run shows on the terminal: its lines on standard output, its warnings, and its progress bars on
standard error; nothing but errors with ``--quiet``.
"""

import sys
from contextlib import contextmanager

from .._progress import reporting


def _say(args, message):
    if not args.quiet:
        print(message, flush=True)


def _warn(args, message):
    if not args.quiet:
        print(f"kerdensom: warning: {message}", file=sys.stderr, flush=True)


_STAGES = {"read": "reading", "ctf": "phase-flipping", "align": "aligning"}


@contextmanager
def _progress_bars(args, total):
    """A ``progress(stage, n)`` callable that moves one progress bar (with its rate and time left) per
    stage, on standard error when it is a terminal; none with ``--quiet``."""
    from tqdm import tqdm

    bars = {}

    def progress(stage, n_images):
        if stage not in bars:
            bars[stage] = tqdm(
                total=total, desc=_STAGES[stage], unit=" images", disable=True if args.quiet else None
            )
        bars[stage].update(n_images)

    try:
        yield progress
    finally:
        for bar in bars.values():
            bar.close()


@contextmanager
def _fit_progress_bar(args):
    """A progress bar over the annealing steps of the fit (a step counts in proportion to its iterations
    of --max-iter until it stops), with the time left, on standard error when it is a terminal."""
    from tqdm import tqdm

    with tqdm(total=args.steps, desc="fitting", unit=" steps", disable=True if args.quiet else None) as bar:

        def progress(step, n_steps, iteration, max_iter, step_done):
            position = step + (1.0 if step_done else min(iteration / max_iter, 0.99))
            bar.set_postfix_str(f"step {step + 1}/{n_steps}, iteration {iteration}", refresh=False)
            bar.update(position - bar.n)

        with reporting(progress):
            yield
