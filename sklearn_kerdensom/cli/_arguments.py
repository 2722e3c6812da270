"""The command line: the types of its arguments, its options and the parser; :class:`UsageError`, and the
estimator's parameter names as the command line's flags.
"""

import argparse
import math
import re
from pathlib import Path

from .. import __version__
from ..estimator import ANNEALING_TOL


class UsageError(ValueError):
    """An invalid command line or impossible parameters (exit code 2)."""


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


def _non_negative_or_auto(text):
    return text if text == "auto" else _non_negative(text)


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
    "annealing_tol": "--annealing-tol",
    "subspace_components": "--subspace",
    "n_jobs": "--threads",
}


# The reading functions' keyword arguments that their messages suggest, as the command line's options.
_READING_KEYWORDS = {"pixel_size=": "--pixel-size", "image_root=": "--image-root DIR"}


def _reading_keywords_in_flags(message):
    """A reading function's error message with the keyword arguments it suggests as the options.

    Only a keyword that stands alone (after a space, before punctuation or the end) is replaced, never
    a path that contains the same text (a directory named ``pixel_size=1.06``).
    """
    for keyword, flag in _READING_KEYWORDS.items():
        message = re.sub(rf"(?<=\s){re.escape(keyword)}(?=[.,;)]|\s|$)", flag, message)
    return message


def _in_flags(message):
    """An estimator's error message with its parameter names replaced by the command line's flags."""
    for name, flag in _FLAGS.items():
        message = re.sub(rf"'?\b{name}\b'?", flag, message)
    return message.replace("The --", "--")


def _add_map_options(parser):
    group = parser.add_argument_group("map (KerDenSOM parameters)")
    group.add_argument("--columns", type=_positive_int, default=7, help="map width (default: 7)")
    group.add_argument("--rows", type=_positive_int, default=7, help="map height (default: 7)")
    group.add_argument("--topology", choices=["rect", "hex"], default="rect")
    group.add_argument(
        "--smoothness",
        choices=["auto", "membrane", "bending"],
        default="auto",
        help="roughness penalty: bending (curvature; the map uses its interior; likelihood only) or "
        "Xmipp's membrane (pulls the particles onto the map's border); auto (default): bending for "
        "--objective likelihood, membrane for xmipp",
    )
    group.add_argument("--kernel", choices=["gaussian", "student_t"], default="gaussian")
    group.add_argument("--df", type=_positive, default=3.0, help="Student-t degrees of freedom (default: 3)")
    group.add_argument(
        "--reg-initial",
        type=_non_negative,
        help="first regularization (default: 10000 for bending, Xmipp's 1000 for membrane)",
    )
    group.add_argument(
        "--reg-final",
        type=_non_negative,
        help="last regularization (default: 200)",
    )
    group.add_argument("--steps", type=_positive_int, default=5, help="annealing steps (default: 5)")
    group.add_argument("--objective", choices=["likelihood", "xmipp"], default="likelihood")
    group.add_argument("--max-iter", type=_positive_int, default=200, help="iterations per step (200)")
    group.add_argument(
        "--tol",
        type=_non_negative,
        default=1e-7,
        help="kernel width tolerance of the first and the last step (1e-7)",
    )
    group.add_argument(
        "--annealing-tol",
        type=_non_negative_or_auto,
        default="auto",
        help="the same for the steps between the first and the last (auto: "
        f"{ANNEALING_TOL:g} for --objective likelihood, --tol for xmipp)",
    )
    group.add_argument("--init", choices=["pca", "random"], default="pca")
    group.add_argument(
        "--subspace",
        type=_positive_int,
        metavar="K",
        help="fit in the principal subspace of K dimensions, each image's residual kept as a direction of "
        "its own (faster; likelihood only)",
    )
    group.add_argument("--standardize", action="store_true", help="z-score every pixel (Xmipp --norm)")
    group.add_argument("--seed", type=_integer, default=0, help="random seed (default: 0)")


def _add_threads_option(parser):
    parser.add_argument(
        "--threads",
        "--jobs",
        dest="threads",
        type=_n_jobs,
        default=-1,
        metavar="N",
        help="threads that align the images and fit the map, each on one BLAS thread (default: -1, every "
        "processor this process may use; fewer on a shared node; negative -n leaves n - 1 free)",
    )


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
        help="the .cs file's cryoSPARC passthrough file (default: the *passthrough*.cs beside it, or its "
        "job's among several)",
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
    _add_threads_option(classify)
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
    _add_threads_option(demo)
    _add_map_options(demo)
    _add_output_options(demo)
    return parser
