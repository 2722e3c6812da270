"""``kerdensom demo``: the embedded demo set (simulated AdK particles) classified, its particles written
beside the outputs, and the map compared with their ground-truth path coordinate.
"""

import math
import time

from ..averaging import mean_per_class
from ..ctf import PHASE_FLIPPED_COLUMN, CTFParameters
from ..masking import circular_mask
from ..metrics import position_correlation
from ._console import _say
from ._fitting import _check_settings, _estimator, _fit
from ._outputs import _output_directory, _summary, _wiener_averages, _write_outputs


def _demo(args):
    som = _estimator(args)
    _check_settings(args, args.n_particles)
    with _output_directory(args) as output:
        written = _run_demo(args, som, output.staging)
    _say(args, f"wrote {args.out}: {', '.join(written)}")


def _run_demo(args, som, staging):
    from ..datasets import load_demo

    start = time.perf_counter()
    data = load_demo(args.n_particles, random_state=args.seed)
    simulate_s = time.perf_counter() - start
    _say(args, f"simulated {len(data.images)} AdK particles along the closed -> open path (SNR 0.1)")
    mask = circular_mask(data.images.shape[1:], data.mask_radius)
    averager, fit_s = _fit(data.images, mask, som, args)
    summary = _summary(averager, data.images, mask, args, data.pixel_size)
    summary["timings"] = {"simulate_s": simulate_s, "fit_s": fit_s}
    # The simulated particles are phase-flipped, and their CTF is known.
    _wiener_averages(averager, data.images, data.ctf, data.pixel_size, summary)
    correlation = position_correlation(averager.node_positions_[averager.labels_], data.path_coordinate)
    summary["path_correlation"] = correlation
    shown = f"{correlation:.3f}" if math.isfinite(correlation) else "undefined (too few particles or classes)"
    _say(args, f"path coordinate vs map position: R = {shown}")
    figures = {"path.png": lambda: _plot_path_coordinate(averager, data)}
    metadata = _write_demo_particles(data, staging, args.out)
    return _write_outputs(
        averager,
        data.images,
        summary,
        args,
        staging,
        metadata=metadata,
        pixel_size=data.pixel_size,
        figures=figures,
    )


DEMO_STACK = "particles.mrcs"


def _write_demo_particles(data, staging, out):
    """Write the demo's particles as a stack, and return their table as :func:`load_particles` would read
    it (image names, CTF, optics group, ground-truth path coordinate), so that the demo's particles.star
    can be classified again, or subsets selected from it."""
    import pandas as pd

    from ..datasets import MICROSCOPE
    from ..io import OPTICS_ATTR, path_for_star
    from ..io._mrc import _write_stack

    _write_stack(staging / DEMO_STACK, data.images, data.pixel_size)
    stack = path_for_star(out / DEMO_STACK, out)
    metadata = pd.DataFrame(
        {
            "rlnImageName": [f"{index:06d}@{stack}" for index in range(1, len(data.images) + 1)],
            "rlnDefocusU": data.ctf.defocus_u,
            "rlnDefocusV": data.ctf.defocus_v,
            "rlnDefocusAngle": data.ctf.defocus_angle,
            "rlnOpticsGroup": 1,
            "kerdensomPathCoordinate": data.path_coordinate,
        }
    )
    labels = {name: label for name, (label, _) in CTFParameters.COLUMNS.items()}
    metadata.attrs[OPTICS_ATTR] = {
        "rlnOpticsGroup": [1],
        "rlnOpticsGroupName": ["opticsGroup1"],
        **{labels[name]: [value] for name, value in MICROSCOPE.items()},
        "rlnImagePixelSize": [data.pixel_size],
        "rlnImageSize": [data.images.shape[1]],
        "rlnImageDimensionality": [2],
        # The simulator phase-flips its particles.
        PHASE_FLIPPED_COLUMN: [1],
    }
    return metadata


def _plot_path_coordinate(averager, data):
    """The demo's ground truth on the map: mean path coordinate of every class's particles."""
    from ..plotting import plot_node_values

    fig, ax = plot_node_values(
        mean_per_class(data.path_coordinate, averager.labels_, len(averager.counts_)),
        averager.node_positions_,
        topology=averager.estimator_[-1]._fitted.topology,
        cmap="coolwarm",
        label="path coordinate (0 closed, 1 open)",
    )
    ax.set_title("Mean path coordinate of each class")
    return fig, ax
