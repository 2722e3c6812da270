"""``kerdensom select``: the particles of chosen classes of a run as a STAR file, to classify again."""

import hashlib
import os
import re
import tempfile
from pathlib import Path

from .. import __version__, _signals
from .._output_directory import _rename_no_replace, unusable_out
from ._console import _say

# The first line of every subset STAR file kerdensom writes starts with this marker and holds the
# SHA-256 of the lines below it: --overwrite replaces only such a file, and only as it was written.
SUBSET_MARKER = "written by sklearn-kerdensom"
_DIGEST = re.compile(r"\(sha256 ([0-9a-f]{64}) of the lines below\)")


def _select(args):
    from ..io import select_classes, write_particle_star

    star = args.run / "particles.star" if args.run.is_dir() else args.run
    _check_classes_exist(args, star)
    _check_subset_target(args)
    subset = select_classes(star, args.classes, image_root=args.image_root)
    try:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(
            prefix=f".{args.out.name}.", suffix=".tmp", dir=args.out.parent
        )
    except OSError as error:
        raise unusable_out(args.out, error) from None
    os.close(descriptor)
    temporary = Path(temporary)
    try:
        write_particle_star(subset, temporary, overwrite=True)  # its own temporary file
        body = temporary.read_bytes()
        header = (
            f"# {SUBSET_MARKER} {__version__} (sha256 {_sha256(body)} of the lines below): "
            f"{' '.join(['kerdensom', *args.argv])}\n"
        )
        temporary.write_bytes(header.encode("utf-8") + body)
        with _signals.deferred():
            if args.overwrite and args.out.exists():
                _check_subset_target(args)  # again: what is there now must still be a subset it wrote
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
    with open(out, "rb") as existing:
        first_line = existing.readline().decode("utf-8", errors="replace")
        body = existing.read()
    if not first_line.startswith(f"# {SUBSET_MARKER}"):
        raise ValueError(
            f"--out {out} exists and is not a subset written by kerdensom select: it is not replaced, "
            "even with --overwrite"
        )
    digest = _DIGEST.search(first_line)
    if digest is None or digest.group(1) != _sha256(body):
        raise ValueError(
            f"--out {out} is a subset kerdensom select wrote, but it has been changed since (or it was "
            "written by a version that did not record its checksum): it is not replaced, even with "
            "--overwrite; move it away or give another --out"
        )


def _sha256(content):
    return hashlib.sha256(content).hexdigest()
