"""``kerdensom classify``: the particles of a RELION STAR file or a cryoSPARC .cs file, checked, read,
CTF-corrected, aligned, preprocessed and classified.
"""

import math
import tempfile
import time
from contextlib import contextmanager

import numpy as np

from ..ctf import (
    PHASE_FLIPPED_COLUMN,
    PREMULTIPLIED_COLUMN,
    CTFParameters,
    flagged_rows,
    has_ctf,
    missing_ctf_columns,
    pixel_size_of,
)
from ..masking import _checked_mask_values, circular_mask
from ..metrics import position_correlation
from ._arguments import UsageError
from ._console import _progress_bars, _say, _warn
from ._fitting import _check_settings, _estimator, _fit
from ._outputs import _output_directory, _summary, _wiener_averages, _write_outputs


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


def _read_mask(path):
    import mrcfile

    if not path.is_file():
        raise FileNotFoundError(f"mask file not found: {path}")
    try:
        with mrcfile.open(path, permissive=True) as mrc:
            data = mrc.data
            mask = None if data is None else np.array(data, dtype=np.float64)
    except ValueError as error:
        raise ValueError(f"mask {path} is not a readable MRC file ({error})") from None
    if mask is None:
        raise ValueError(f"mask {path} is not a readable MRC file")
    if mask.ndim == 3 and mask.shape[0] == 1:
        mask = mask[0]
    if mask.ndim != 2:
        raise ValueError(f"mask {path} must be a 2-D image; it has shape {mask.shape}")
    try:
        return _checked_mask_values(mask)  # before any particle is read
    except ValueError as error:
        raise ValueError(f"mask {path}: {error}") from None


def _check_ctf(args, metadata):
    """Before any image is read: an error if ``--ctf phase-flip`` has no CTF to flip with, a warning if
    ``--ctf auto`` finds none."""
    missing = missing_ctf_columns(metadata)
    if not missing:
        return
    from ..io._cryosparc import find_passthrough, passthrough_candidates

    without_ctf = f"{args.star} has no CTF parameters ({', '.join(missing)} missing"
    if args.star.suffix == ".cs" and args.passthrough is None and find_passthrough(args.star) is None:
        # cryoSPARC keeps the CTF in the passthrough file, often left behind when a job's .cs is copied.
        if len(passthrough_candidates(args.star)) > 1:
            without_ctf += ", and of the passthrough files beside it none is its job's"
        else:
            without_ctf += ", and there is no passthrough file beside it"
        without_ctf += ": give it with --passthrough"
    if args.ctf == "phase-flip":
        raise ValueError(
            f"--ctf phase-flip: {without_ctf}); use --ctf none for particles that need no correction"
        )
    if args.ctf == "auto":
        _warn(
            args,
            f"{without_ctf}): the particles are classified without CTF correction; unless they are already "
            "corrected, the map may sort them by defocus",
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
        if args.soft_edge:
            raise UsageError(
                f"--soft-edge {args.soft_edge:g} shapes the edge of --mask-radius; a --mask file has its own "
                "edge (soften it in the file)"
            )
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
    from ..io import read_image_shape, read_particle_table

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


def _classify_particles(args, som, table, mask, staging):
    from ..io import load_particles, relocate_image_names

    start = time.perf_counter()
    with _progress_bars(args, len(table.metadata)) as progress:
        particles = load_particles(
            table,
            ctf=args.ctf,
            align=not args.no_align,
            pixel_size=args.pixel_size,
            scratch_dir=args.scratch,
            n_jobs=args.threads,
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
    summary["averages"] = "mean"
    if has_ctf(particles.metadata):
        ctf = CTFParameters.from_table(particles.metadata)
        flipped = particles.phase_flipped | flagged_rows(particles.metadata, PHASE_FLIPPED_COLUMN)
        if pixel_size is not None and flipped.all():
            _wiener_averages(averager, images, ctf, pixel_size, summary)
        correlation = position_correlation(
            averager.node_positions_[averager.labels_], (ctf.defocus_u + ctf.defocus_v) / 2
        )
        summary["ctf"]["defocus_correlation"] = correlation
        if math.isfinite(correlation):
            # A map that sorts the particles by defocus shows the microscope, not the structure.
            _say(args, f"defocus vs map position: R = {correlation:.2f}")
    return _write_outputs(
        averager,
        images,
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
    from ..preprocessing import BackgroundNormalizer, FourierCropper, LowPassFilter

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
