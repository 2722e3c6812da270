"""The ``kerdensom`` command: classify RELION particles, or run the demo, from a terminal.

Exit codes: 0 success; 1 a problem with the input or output files or the data;
2 an invalid command line or impossible parameters; 130, 143 and 129
interrupted (Ctrl-C, SIGTERM, SIGHUP). Errors are one line on standard error, without a traceback.
Outputs are written to a staging directory beside ``--out`` and moved into
place at the end, so a failed or interrupted run leaves nothing behind, and
``--out`` never loses a file this tool did not write (:mod:`._output_directory`).
"""

import argparse
import json
import math
import os
import platform
import re
import signal
import sys
import tempfile
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from sklearn.pipeline import make_pipeline

from . import __version__, _signals
from ._annealing import regularization_schedule
from ._output_directory import (
    MANIFEST_KEY,
    SUMMARY,
    OutputDirectory,
    OutputRefused,
    _rename_no_replace,
    manifest_entries,
)
from ._progress import reporting
from ._topology import check_map_fits_in_memory
from .averaging import ClassAverager, mean_per_class
from .ctf import (
    PHASE_FLIPPED_COLUMN,
    PREMULTIPLIED_COLUMN,
    CTFParameters,
    has_ctf,
    missing_ctf_columns,
    pixel_size_of,
)
from .estimator import KerDenSOM
from .masking import MaskVectorizer, circular_mask
from .metrics import position_correlation


class UsageError(ValueError):
    """An invalid command line or impossible parameters (exit code 2)."""


class Terminated(BaseException):
    """SIGTERM, raised like Ctrl-C's KeyboardInterrupt so that the run cleans up after itself."""


# argparse names the flag in its message ("argument --columns: ..."), so the types say only what is wrong.


def _integer(text):
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None


def _positive_int(text):
    value = _integer(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _n_jobs(text):
    value = _integer(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be a number of threads, or negative (-1: all processors)")
    return value


def _finite(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
    return value


def _positive(text):
    value = _finite(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _non_negative(text):
    value = _finite(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _class_numbers(text):
    """``3,4,10`` or ``3-5,12``: class numbers counted from 1."""
    numbers = set()
    for part in text.split(","):
        first, dash, last = part.strip().partition("-")
        try:
            low, high = int(first), int(last if dash else first)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not class numbers: {text!r} (e.g. 3,4,10 or 3-5,12)") from None
        if low < 1 or high < low:
            raise argparse.ArgumentTypeError(f"class numbers count from 1, ranges go up: {part.strip()!r}")
        numbers.update(range(low, high + 1))
    return sorted(numbers)


def _existing_directory(text):
    path = Path(text).expanduser()
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"not an existing directory: {text}")
    return path


# The estimator's parameter names, as the command line spells them, for the messages of its checks.
_FLAGS = {
    "n_columns": "--columns",
    "n_rows": "--rows",
    "annealing_steps": "--steps",
    "reg_initial": "--reg-initial",
    "reg_final": "--reg-final",
    "max_iter": "--max-iter",
    "random_state": "--seed",
    "smoothness": "--smoothness",
    "objective": "--objective",
    "df": "--df",
    "tol": "--tol",
}


def _in_flags(message):
    """An estimator's error message with its parameter names replaced by the command line's flags."""
    for name, flag in _FLAGS.items():
        message = re.sub(rf"'?\b{name}\b'?", flag, message)
    return message.replace("The --", "--")


# Fewer particles than this per class leave most classes empty.
_PARTICLES_PER_CLASS = 3


@contextmanager
def _temporary_files_in(directory):
    """Temporary files (the masked vectors of memory-mapped images) go to ``directory`` while active."""
    if directory is None:
        yield
        return
    previous, tempfile.tempdir = tempfile.tempdir, str(directory)
    try:
        yield
    finally:
        tempfile.tempdir = previous


def _add_map_options(parser):
    group = parser.add_argument_group("map (KerDenSOM parameters; defaults are Scipion's)")
    group.add_argument("--columns", type=_positive_int, default=7, help="map width (default: 7)")
    group.add_argument("--rows", type=_positive_int, default=7, help="map height (default: 7)")
    group.add_argument("--topology", choices=["rect", "hex"], default="rect")
    group.add_argument(
        "--smoothness",
        choices=["membrane", "bending"],
        default="membrane",
        help="roughness penalty: Xmipp's membrane (default) or bending (spreads the map; likelihood only)",
    )
    group.add_argument("--kernel", choices=["gaussian", "student_t"], default="gaussian")
    group.add_argument("--df", type=_positive, default=3.0, help="Student-t degrees of freedom (default: 3)")
    group.add_argument(
        "--reg-initial", type=_non_negative, default=1000.0, help="first regularization (1000)"
    )
    group.add_argument("--reg-final", type=_non_negative, default=200.0, help="last regularization (200)")
    group.add_argument("--steps", type=_positive_int, default=5, help="annealing steps (default: 5)")
    group.add_argument("--objective", choices=["likelihood", "xmipp"], default="likelihood")
    group.add_argument("--max-iter", type=_positive_int, default=200, help="iterations per step (200)")
    group.add_argument("--tol", type=_non_negative, default=1e-7, help="kernel width tolerance (1e-7)")
    group.add_argument("--init", choices=["pca", "random"], default="pca")
    group.add_argument("--standardize", action="store_true", help="z-score every pixel (Xmipp --norm)")
    group.add_argument("--seed", type=_integer, default=0, help="random seed (default: 0)")


def _add_output_options(parser):
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output directory")
    talk = parser.add_mutually_exclusive_group()
    talk.add_argument("--quiet", action="store_true", help="print nothing but errors")
    talk.add_argument(
        "-v", "--verbose", action="store_true", help="a line per iteration, not only per annealing step"
    )


def _parser():
    parser = argparse.ArgumentParser(
        prog="kerdensom", description="Kernel-density self-organizing maps of aligned particle images."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    classify = commands.add_parser(
        "classify", help="classify the particles of a RELION STAR file or a cryoSPARC .cs file"
    )
    classify.add_argument(
        "star", type=Path, help="RELION particles STAR file, or cryoSPARC particles .cs file"
    )
    classify.add_argument(
        "--passthrough",
        type=Path,
        metavar="CS",
        help="the .cs file's cryoSPARC passthrough file (default: the one *passthrough*.cs beside it)",
    )
    mask = classify.add_mutually_exclusive_group(required=True)
    mask.add_argument("--mask", type=Path, help="mask MRC file (boolean or soft, values in [0, 1])")
    mask.add_argument("--mask-radius", type=_positive, help="circular mask radius in pixels")
    classify.add_argument(
        "--soft-edge", type=_non_negative, default=0.0, help="soft edge of --mask-radius (px)"
    )
    classify.add_argument(
        "--image-root", type=_existing_directory, help="where to find stacks that have moved"
    )
    classify.add_argument("--pixel-size", type=_positive, help="pixel size in Å, overriding the file's")
    classify.add_argument(
        "--ctf",
        choices=["auto", "phase-flip", "none"],
        default="auto",
        help="CTF correction before alignment: phase-flip with the STAR file's CTF parameters (RELION's "
        "conventions), unless its optics group says the images are already phase-flipped; auto (default) "
        "phase-flips when the file has CTF parameters and does nothing when it has none",
    )
    classify.add_argument("--no-align", action="store_true", help="use the images without alignment")
    preprocessing = classify.add_argument_group(
        "preprocessing (after CTF correction and alignment, in this order)"
    )
    preprocessing.add_argument(
        "--box",
        type=_positive_int,
        metavar="PX",
        help="downsample the particles to PX x PX pixels by Fourier cropping (e.g. 64 for 256 px boxes); "
        "--mask-radius and --soft-edge stay in the input's pixels, a --mask file must be PX x PX",
    )
    preprocessing.add_argument(
        "--lowpass", type=_positive, metavar="ANGSTROM", help="low-pass filter at this resolution in Å"
    )
    preprocessing.add_argument(
        "--normalize",
        action="store_true",
        help="background mean 0, std 1 outside a circle of 75%% of the box (RELION's normalization)",
    )
    classify.add_argument(
        "--scratch",
        type=_existing_directory,
        metavar="DIR",
        help="directory for temporary files that hold the aligned images and their masked vectors instead "
        "of memory (for particle sets larger than memory; deleted at the end)",
    )
    classify.add_argument(
        "--jobs",
        type=_n_jobs,
        default=-1,
        metavar="N",
        help="threads that align the images (default: -1, all processors)",
    )
    _add_map_options(classify)
    _add_output_options(classify)

    select = commands.add_parser(
        "select", help="write the particles of chosen classes of a run as a STAR file, to classify again"
    )
    select.add_argument(
        "run",
        type=Path,
        help="a kerdensom output directory, or a classified particles STAR file (with rlnClassNumber)",
    )
    select.add_argument(
        "--classes",
        required=True,
        type=_class_numbers,
        help="class numbers (the #N on map.png, rlnClassNumber), e.g. 3,4,10 or 3-5,12",
    )
    select.add_argument("--out", required=True, type=Path, help="the subset STAR file to write")
    select.add_argument(
        "--overwrite", action="store_true", help="replace --out, if it is a subset kerdensom wrote"
    )
    select.add_argument("--image-root", type=_existing_directory, help="where to find stacks that have moved")
    select.add_argument("--quiet", action="store_true", help="print nothing but errors")

    simulate = commands.add_parser(
        "simulate",
        help="write simulated AdK particles (64 px, not phase-flipped, with their CTF) as a RELION or "
        "cryoSPARC project holds them, to try the commands on",
    )
    simulate.add_argument("project", type=Path, help="the project directory to write (must not exist)")
    simulate.add_argument("--format", choices=["relion", "cryosparc"], default="relion")
    simulate.add_argument("--n-particles", type=_positive_int, default=1000, help="default: 1000")
    simulate.add_argument("--seed", type=_integer, default=0, help="random seed (default: 0)")
    simulate.add_argument("--quiet", action="store_true", help="print nothing but errors")

    demo = commands.add_parser("demo", help="classify the embedded demo set (simulated AdK particles)")
    demo.add_argument("--n-particles", type=_positive_int, default=1000, help="default: 1000")
    _add_map_options(demo)
    _add_output_options(demo)
    return parser


def _estimator(args):
    """The KerDenSOM of the command line, its parameters checked before any data is read."""
    som = KerDenSOM(
        args.columns,
        args.rows,
        topology=args.topology,
        smoothness=args.smoothness,
        kernel=args.kernel,
        df=args.df,
        reg_initial=args.reg_initial,
        reg_final=args.reg_final,
        annealing_steps=args.steps,
        objective=args.objective,
        max_iter=args.max_iter,
        tol=args.tol,
        init=args.init,
        standardize=args.standardize,
        random_state=args.seed,
        verbose=0 if args.quiet else 2 if args.verbose else 1,
    )
    try:
        som._validate_params()
        regularization_schedule(args.reg_initial, args.reg_final, args.steps)
        check_map_fits_in_memory(args.columns, args.rows)
        som._check_smoothness_objective()
    except ValueError as error:
        raise UsageError(_in_flags(str(error))) from None
    return som


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


def _read_mask(path):
    import mrcfile

    if not path.is_file():
        raise FileNotFoundError(f"mask file not found: {path}")
    with mrcfile.open(path, permissive=True) as mrc:
        if mrc.data is None:
            raise ValueError(f"{path} is not a readable MRC file")
        mask = np.array(mrc.data, dtype=np.float64)
    if mask.ndim == 3 and mask.shape[0] == 1:
        mask = mask[0]
    if mask.ndim != 2:
        raise ValueError(f"mask {path} must be a 2-D image; it has shape {mask.shape}")
    return mask


def _say(args, message):
    if not args.quiet:
        print(message, flush=True)


def _warn(args, message):
    if not args.quiet:
        print(f"kerdensom: warning: {message}", file=sys.stderr, flush=True)


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


def _fit(images, mask, som, args):
    """The ClassAverager of ``MaskVectorizer(mask) -> som`` fitted on the images, and its fit time."""
    _say(args, f"fitting a {args.columns} x {args.rows} map on {len(images)} images of {images.shape[1:]} px")
    start = time.perf_counter()
    # The fit's warnings (a step stopped at --max-iter) become one line each, like the command's own.
    with warnings.catch_warnings(record=True) as caught, _fit_progress_bar(args):
        warnings.simplefilter("always")
        averager = ClassAverager(make_pipeline(MaskVectorizer(mask), som)).fit(images)
    for warning in caught:
        _warn(args, str(warning.message))
    return averager, time.perf_counter() - start


def _summary(averager, images, mask, args, pixel_size):
    fitted = averager.estimator_[-1]
    return {
        "command": args.argv,
        "parameters": {k: v for k, v in fitted.get_params().items() if k != "init" or isinstance(v, str)},
        "versions": _versions(),
        "n_particles": len(images),
        "image_shape": list(images.shape[1:]),
        "pixel_size": pixel_size,
        "mask_pixels": int(np.count_nonzero(mask)),
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


def _write_outputs(averager, summary, args, staging, *, metadata=None, pixel_size=None, figures=None):
    """Write every output into the staging directory, ``summary.json`` (with the manifest) last.

    ``figures`` maps extra PNG file names to functions that draw them (returning ``(fig, ax)``).
    """
    from .io import write_class_averager
    from .plotting import plot_class_map

    figures = {"map.png": lambda: plot_class_map(averager, kind="both"), **(figures or {})}
    start = time.perf_counter()
    write_class_averager(averager, staging, metadata=metadata, pixel_size=pixel_size, location=args.out)
    for name, draw in figures.items():
        figure, _ = draw()
        figure.savefig(staging / name, dpi=120)
    summary["timings"]["write_s"] = time.perf_counter() - start
    summary.update(manifest_entries(staging))
    text = json.dumps(_json_value(summary), indent=2, allow_nan=False)
    (staging / SUMMARY).write_text(text + "\n")
    return sorted([*summary[MANIFEST_KEY], SUMMARY])


def _check_settings(args, n_particles):
    """Warnings, before any work, for settings that make little sense with this many particles."""
    n_classes = args.columns * args.rows
    if n_particles < _PARTICLES_PER_CLASS * n_classes:
        _warn(
            args,
            f"{n_particles} particles for {n_classes} classes (fewer than {_PARTICLES_PER_CLASS} a class): "
            "most classes will be empty; a smaller map (--columns, --rows) suits them better",
        )


def _check_ctf(args, metadata):
    """Before any image is read: an error if ``--ctf phase-flip`` has no CTF to flip with, a warning if
    ``--ctf auto`` finds none."""
    missing = missing_ctf_columns(metadata)
    if not missing:
        return
    if args.ctf == "phase-flip":
        raise ValueError(
            f"--ctf phase-flip: {args.star} has no CTF parameters ({', '.join(missing)} missing); use "
            "--ctf none for particles that need no correction"
        )
    if args.ctf == "auto":
        _warn(
            args,
            f"{args.star} has no CTF parameters ({', '.join(missing)} missing): the particles are classified "
            "without CTF correction; unless they are already corrected, the map may sort them by defocus",
        )


def _classified_shape(args, shape):
    """The shape of the particles as classified (``--box``), checked against theirs (``shape``)."""
    if args.box is None:
        return shape
    if shape[0] != shape[1]:
        raise ValueError(f"--box {args.box}: Fourier cropping needs square particles; they are {shape} px")
    if args.box > shape[0]:
        raise ValueError(
            f"--box {args.box} is larger than the {shape[0]} px particles: it can only shrink them"
        )
    return (args.box, args.box)


def _mask_for(args, shape, classified_shape):
    """The mask of the command line for images of ``shape`` classified at ``classified_shape``, checked
    against them before any image is read."""
    if args.mask is not None:
        mask = _read_mask(args.mask)
        if mask.shape != classified_shape:
            resized = " (--box)" if classified_shape != shape else ""
            raise ValueError(
                f"mask {args.mask} has shape {mask.shape}, but the particles are classified at "
                f"{classified_shape} px{resized}"
            )
        return mask
    half_box = min(shape) / 2
    if args.mask_radius + args.soft_edge > half_box:
        edge = f" + --soft-edge {args.soft_edge:g}" if args.soft_edge else ""
        _warn(
            args,
            f"--mask-radius {args.mask_radius:g}{edge} reaches beyond the {shape[1]} x {shape[0]} px box "
            f"(half of it is {half_box:g} px): the corners of the images, not the particles, fill the mask's "
            "edge",
        )
    # The radius is in the input's pixels, which the user sees in the data; --box shrinks them.
    scale = classified_shape[0] / shape[0]
    return circular_mask(classified_shape, args.mask_radius * scale, soft_edge=args.soft_edge * scale)


def _classify(args):
    from .io import read_image_shape, read_particle_table

    som = _estimator(args)
    table = read_particle_table(args.star, image_root=args.image_root, passthrough=args.passthrough)
    shape = read_image_shape(next(iter(table.stack_paths.values())))
    classified_shape = _classified_shape(args, shape)
    mask = _mask_for(args, shape, classified_shape)
    pixel_size = args.pixel_size if args.pixel_size is not None else pixel_size_of(table.metadata)
    if args.lowpass is not None and pixel_size is not None:
        _check_lowpass(args, pixel_size * shape[0] / classified_shape[0])
    _check_settings(args, len(table.metadata))
    _check_ctf(args, table.metadata)
    inputs = [
        args.star,
        *table.stack_paths.values(),
        *(path for path in (args.mask, args.passthrough) if path),
    ]
    with _output_directory(args, inputs) as output, _temporary_files_in(args.scratch):
        written = _classify_particles(args, som, table, mask, output.staging)
    _say(args, f"wrote {args.out}: {', '.join(written)}")


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


def _classify_particles(args, som, table, mask, staging):
    from .io import load_particles, relocate_image_names

    start = time.perf_counter()
    with _progress_bars(args, len(table.metadata)) as progress:
        particles = load_particles(
            table,
            ctf=args.ctf,
            align=not args.no_align,
            pixel_size=args.pixel_size,
            scratch_dir=args.scratch,
            n_jobs=args.jobs,
            progress=progress,
        )
    read_s = time.perf_counter() - start
    _say(args, f"read {len(particles.images)} particles from {args.star} in {read_s:.1f}s")
    _say_ctf(args, particles)
    if particles.pixel_size is None:
        _warn(
            args,
            "no pixel size in the STAR file or the MRC headers: the outputs' headers say 0 Å; "
            "give it with --pixel-size",
        )
    images, pixel_size = _preprocessed(args, particles.images, particles.pixel_size)
    averager, fit_s = _fit(images, mask, som, args)
    summary = _summary(averager, images, mask, args, pixel_size)
    summary["timings"] = {"read_s": read_s, "fit_s": fit_s}
    summary["preprocessing"] = {"box": args.box, "lowpass": args.lowpass, "normalize": args.normalize}
    summary["ctf"] = {"correction": args.ctf, "phase_flipped": int(particles.phase_flipped.sum())}
    if has_ctf(particles.metadata):
        defocus = CTFParameters.from_table(particles.metadata)
        correlation = position_correlation(
            averager.node_positions_[averager.labels_], (defocus.defocus_u + defocus.defocus_v) / 2
        )
        summary["ctf"]["defocus_correlation"] = correlation
        if math.isfinite(correlation):
            # A map that sorts the particles by defocus shows the microscope, not the structure.
            _say(args, f"defocus vs map position: R = {correlation:.2f}")
    return _write_outputs(
        averager,
        summary,
        args,
        staging,
        # Image names as RELION and this tool resolve them from the output directory.
        metadata=relocate_image_names(table, args.out),
        pixel_size=pixel_size,
    )


def _check_lowpass(args, pixel_size):
    """``--lowpass`` against the pixel size of the particles as classified (None: unknown)."""
    if pixel_size is None:
        raise ValueError(
            "--lowpass needs the pixel size, which the STAR file does not give: add --pixel-size"
        )
    if args.lowpass < 2 * pixel_size:
        raise ValueError(
            f"--lowpass {args.lowpass:g} Å is finer than the Nyquist limit of the classified particles "
            f"({2 * pixel_size:g} Å): it would remove nothing"
        )


def _preprocessed(args, images, pixel_size):
    """The particles Fourier-cropped (``--box``), low-pass filtered (``--lowpass``) and normalized
    (``--normalize``), and their pixel size (None if unknown)."""
    from .preprocessing import BackgroundNormalizer, FourierCropper, LowPassFilter

    steps = []
    if args.box is not None and args.box != images.shape[1]:
        steps.append(FourierCropper(args.box))
        pixel_size = None if pixel_size is None else pixel_size * images.shape[1] / args.box
    if args.lowpass is not None:
        _check_lowpass(args, pixel_size)
        steps.append(LowPassFilter(args.lowpass, pixel_size))
    if args.normalize:
        steps.append(BackgroundNormalizer())
    for step in steps:
        images = step.fit_transform(images)
    if steps:
        done = ", ".join(type(step).__name__ for step in steps)
        size = f", {pixel_size:.3g} Å/px" if pixel_size is not None else ""
        _say(args, f"preprocessed ({done}): {images.shape[2]} x {images.shape[1]} px{size}")
    return images, pixel_size


def _say_ctf(args, particles):
    n_flipped, n_particles = int(particles.phase_flipped.sum()), len(particles.phase_flipped)
    if n_flipped:
        _say(args, f"phase-flipped {n_flipped} of {n_particles} particles with their CTF parameters")
    if args.ctf != "none" and n_flipped < n_particles and has_ctf(particles.metadata):
        _say(
            args,
            f"{n_particles - n_flipped} particles not phase-flipped: their optics group says they are "
            f"already ({PHASE_FLIPPED_COLUMN} or {PREMULTIPLIED_COLUMN} 1)",
        )


# The first line of every subset STAR file kerdensom writes: --overwrite replaces only such a file.
SUBSET_MARKER = "written by sklearn-kerdensom"


def _select(args):
    from .io import select_classes, write_particle_star

    star = args.run / "particles.star" if args.run.is_dir() else args.run
    _check_classes_exist(args, star)
    _check_subset_target(args)
    subset = select_classes(star, args.classes, image_root=args.image_root)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{args.out.name}.", suffix=".tmp", dir=args.out.parent)
    os.close(descriptor)
    temporary = Path(temporary)
    try:
        header = f"{SUBSET_MARKER} {__version__}: {' '.join(['kerdensom', *args.argv])}"
        write_particle_star(subset, temporary, header=header)
        with _signals.deferred():
            if args.overwrite and args.out.exists():
                os.replace(temporary, args.out)
            else:
                _rename_no_replace(temporary, args.out)
    finally:
        temporary.unlink(missing_ok=True)
    shown = ", ".join(map(str, subset.classes))
    _say(args, f"wrote {args.out}: {len(subset.metadata)} particles of class(es) {shown}")


def _check_classes_exist(args, star):
    """Class numbers beyond a kerdensom run's map are an error, before anything is read."""
    classes_star = star.parent / "classes.star"
    if not (args.run.is_dir() and classes_star.is_file()):
        return
    import starfile

    n_classes = len(starfile.read(classes_star, always_dict=True)["classes"])
    beyond = [number for number in args.classes if number > n_classes]
    if beyond:
        raise ValueError(
            f"--classes {', '.join(map(str, beyond))}: the run {args.run} has {n_classes} classes "
            f"(1 to {n_classes})"
        )


def _check_subset_target(args):
    """``--out`` may be written: new, or (with --overwrite) a subset kerdensom wrote."""
    out = args.out
    if out.is_dir():
        raise ValueError(
            f"--out {out} is a directory; give the STAR file to write, e.g. {out / 'subset.star'}"
        )
    if not out.exists():
        return
    if not args.overwrite:
        raise ValueError(
            f"--out {out} exists; nothing was written (--overwrite replaces a subset kerdensom wrote)"
        )
    with open(out, encoding="utf-8", errors="replace") as existing:
        first_line = existing.readline()
    if not first_line.startswith(f"# {SUBSET_MARKER}"):
        raise ValueError(
            f"--out {out} exists and kerdensom did not write it: it is not replaced, even with --overwrite"
        )


def _simulate(args):
    from .datasets import make_adk_path
    from .datasets._projects import write_cryosparc_project, write_relion_project

    if args.project.exists():
        raise UsageError(f"{args.project} already exists: simulate writes a new project directory")
    args.out, args.overwrite = args.project, False
    with _output_directory(args) as output:
        data = make_adk_path(args.n_particles, phase_flip=False, random_state=args.seed)
        write = write_relion_project if args.format == "relion" else write_cryosparc_project
        particles = write(output.staging, data).relative_to(output.staging)
        summary = {"command": args.argv, "versions": _versions(), **manifest_entries(output.staging)}
        (output.staging / SUMMARY).write_text(json.dumps(summary, indent=2) + "\n")
    _say(
        args,
        f"wrote {args.project}: {args.n_particles} simulated AdK particles of 64 x 64 px (1.2 Å, SNR 0.1, "
        f"not phase-flipped) along the closed -> open path, in {particles}",
    )


def _demo(args):
    som = _estimator(args)
    _check_settings(args, args.n_particles)
    with _output_directory(args) as output:
        written = _run_demo(args, som, output.staging)
    _say(args, f"wrote {args.out}: {', '.join(written)}")


def _run_demo(args, som, staging):
    from .datasets import load_demo

    start = time.perf_counter()
    data = load_demo(args.n_particles, random_state=args.seed)
    simulate_s = time.perf_counter() - start
    _say(args, f"simulated {len(data.images)} AdK particles along the closed -> open path (SNR 0.1)")
    mask = circular_mask(data.images.shape[1:], data.mask_radius)
    averager, fit_s = _fit(data.images, mask, som, args)
    summary = _summary(averager, data.images, mask, args, data.pixel_size)
    summary["timings"] = {"simulate_s": simulate_s, "fit_s": fit_s}
    correlation = position_correlation(averager.node_positions_[averager.labels_], data.path_coordinate)
    summary["path_correlation"] = correlation
    shown = f"{correlation:.3f}" if math.isfinite(correlation) else "undefined (too few particles or classes)"
    _say(args, f"path coordinate vs map position: R = {shown}")
    figures = {"path.png": lambda: _plot_path_coordinate(averager, data)}
    metadata = _write_demo_particles(data, staging, args.out)
    return _write_outputs(
        averager, summary, args, staging, metadata=metadata, pixel_size=data.pixel_size, figures=figures
    )


DEMO_STACK = "particles.mrcs"


def _write_demo_particles(data, staging, out):
    """Write the demo's particles as a stack, and return their table as :func:`load_particles` would read
    it (image names, CTF, optics group, ground-truth path coordinate), so that the demo's particles.star
    can be classified again, or subsets selected from it."""
    import pandas as pd

    from .datasets import MICROSCOPE
    from .io import OPTICS_ATTR, path_for_star
    from .io._mrc import _write_stack

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
    from .plotting import plot_node_values

    fig, ax = plot_node_values(
        mean_per_class(data.path_coordinate, averager.labels_, len(averager.counts_)),
        averager.node_positions_,
        topology=averager.estimator_[-1]._fitted.topology,
        cmap="coolwarm",
        label="path coordinate (0 closed, 1 open)",
    )
    ax.set_title("Mean path coordinate of each class")
    return fig, ax


def _terminate(signal_number, frame):
    raise Terminated(signal_number)


def main(argv=None):
    """Run the ``kerdensom`` command; returns the exit code."""
    parser = _parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    args.argv = argv
    try:
        # SIGTERM and SIGHUP stop a run as Ctrl-C does, through the same clean-up.
        with _signals.handled(
            [number for number in _signals.STOPPING if number != signal.SIGINT], _terminate
        ):
            commands = {"classify": _classify, "demo": _demo, "select": _select, "simulate": _simulate}
            commands[args.command](args)
    except KeyboardInterrupt:
        print("kerdensom: interrupted", file=sys.stderr)
        return 130
    except Terminated as terminated:
        number = terminated.args[0]
        print(f"kerdensom: terminated ({signal.Signals(number).name})", file=sys.stderr)
        return 128 + number
    except MemoryError:
        print("kerdensom: error: out of memory; try --scratch DIR, or a smaller map", file=sys.stderr)
        return 1
    except UsageError as error:
        print(f"kerdensom: error: {error}", file=sys.stderr)
        return 2
    except ImportError as error:
        print(
            f"kerdensom: error: {error}; install with: pip install 'sklearn-kerdensom[cli]'", file=sys.stderr
        )
        return 1
    except (OSError, ValueError) as error:
        print(f"kerdensom: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
