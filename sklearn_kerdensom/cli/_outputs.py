"""The outputs of a run: its output directory, staged and published (:mod:`._output_directory`), and
what it writes there (class stacks and STAR files, figures, ``report.html``), ``summary.json`` last.
"""

import json
import math
import platform
import sys
import time
from contextlib import contextmanager

import numpy as np

from .. import __version__, _signals
from .._output_directory import MANIFEST_KEY, SUMMARY, OutputDirectory, OutputRefused, manifest_entries
from ._arguments import UsageError
from ._fitting import mask_pixels

# The interactive report (sklearn_kerdensom.report), written beside the other outputs. Like every file of
# the staging directory it is listed in summary.json's manifest, so --overwrite may replace it.
REPORT = "report.html"


def _wiener_averages(averager, images, ctf, pixel_size, summary):
    """Replace the averager's class averages, plain means of phase-flipped ``images``, by CTF-aware ones
    (:func:`~sklearn_kerdensom.averaging.wiener_class_averages`), which measured closer to the true
    structure (benchmarks/bench_averages.py); ``summary`` says which were written."""
    from ..averaging import wiener_class_averages

    averages, _ = wiener_class_averages(images, averager.labels_, ctf, pixel_size, len(averager.averages_))
    averager.averages_ = averages
    summary["averages"] = "wiener"


@contextmanager
def _output_directory(args, inputs=()):
    """The run's :class:`OutputDirectory`, checked and staged before any work; the staged outputs are
    published when the body returns, and discarded if it fails or is interrupted."""
    output = OutputDirectory(args.out, args.overwrite, inputs)
    try:
        left_aside = output.check()
    except OutputRefused as error:
        raise UsageError(str(error)) from None
    for warning in left_aside:
        print(f"kerdensom: warning: {warning}", file=sys.stderr)
    try:
        output.stage()
        yield output
        with _signals.deferred():  # a signal that arrives meanwhile lets the warning be printed first
            warning = output.publish()
            if warning is not None:
                print(f"kerdensom: warning: {warning}", file=sys.stderr)
    finally:
        output.discard()


def _versions():
    import scipy
    import sklearn

    return {
        "sklearn_kerdensom": __version__,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "scikit-learn": sklearn.__version__,
        "python": platform.python_version(),
    }


def _summary(averager, images, mask, args, pixel_size):
    fitted = averager.estimator_[-1]
    return {
        "command": args.argv,
        "parameters": {k: v for k, v in fitted.get_params().items() if k != "init" or isinstance(v, str)},
        "smoothness": fitted.smoothness_,
        "versions": _versions(),
        "n_particles": len(images),
        "image_shape": list(images.shape[1:]),
        "pixel_size": pixel_size,
        "mask_pixels": mask_pixels(mask),
        "subspace_components": fitted.subspace_components_,
        "sigma": fitted.sigma_,
        "n_iter": fitted.n_iter_,
        "converged": fitted.converged_,
        "history": fitted.annealing_history_,  # made JSON by _json_value
        "class_sizes": averager.counts_.tolist(),
    }


def _json_value(value):
    """``value`` for JSON: NumPy arrays as lists, NaN and infinities (e.g. an undefined correlation) as
    null, since JSON has no such numbers."""
    if isinstance(value, dict):
        return {key: _json_value(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_json_value(item) for item in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _write_outputs(averager, images, summary, args, staging, *, metadata=None, pixel_size=None, figures=None):
    """Write every output into the staging directory, ``summary.json`` (with the manifest) last.

    ``images`` are those the map was fitted on (for the report's galleries of class members).
    ``figures`` maps extra PNG file names to functions that draw them (returning ``(fig, ax)``).
    """
    from ..io import write_class_averager
    from ..plotting import plot_class_map
    from ..report import write_report

    figures = {"map.png": lambda: plot_class_map(averager, kind="both"), **(figures or {})}
    start = time.perf_counter()
    write_class_averager(averager, staging, metadata=metadata, pixel_size=pixel_size, location=args.out)
    for name, draw in figures.items():
        figure, _ = draw()
        figure.savefig(staging / name, dpi=120)
    report_start = time.perf_counter()
    # The report shows the summary as it stands: the timings of everything but the writing.
    write_report(
        averager,
        images,
        staging / REPORT,
        summary=_json_value(summary),
        run_directory=args.out,
        title=f"KerDenSOM map: {args.out.name}",
    )
    summary["timings"]["report_s"] = time.perf_counter() - report_start
    summary["timings"]["write_s"] = time.perf_counter() - start
    summary.update(manifest_entries(staging))
    text = json.dumps(_json_value(summary), indent=2, allow_nan=False)
    (staging / SUMMARY).write_text(text + "\n")
    return sorted([*summary[MANIFEST_KEY], SUMMARY])
