"""Loading a particle set: its table, then its images, read chunk by chunk, checked, CTF-corrected and
aligned."""

import math
from collections.abc import Mapping
from functools import partial
from pathlib import Path

import numpy as np
import starfile
from sklearn.utils import Bunch

from .._chunks import sample_chunks
from .._samples import temporary_memmap
from ..alignment import _align_into, _alignment_parameters
from ..ctf import CTFParameters, flip_phases_into, has_ctf, rows_to_flip
from ._cryosparc import read_cryosparc_tables
from ._mrc import _map_stack
from ._star import (
    IMAGE_COLUMN,
    _check_pixel_size,
    _merge_optics,
    _numeric_column,
    _parse_image_name,
    _particle_and_optics_tables,
    _pixel_size_from_metadata,
    _resolve_stack,
    _shifts_in_pixels,
    _unnumbered,
)

# The entries of read_particle_table's Bunch that load_particles reads.
_TABLE_KEYS = ("star_path", "metadata", "optics", "addresses", "stack_paths")


def read_particle_table(star_path, *, image_root=None, passthrough=None):
    """Read the particle table of a RELION STAR file (or cryoSPARC ``.cs`` file) and find its stacks,
    without reading any image.

    Everything :func:`load_particles` checks before it reads pixels is checked
    here, so a caller can, for instance, list the input files before reading
    them, then pass the result to :func:`load_particles`, which does not parse
    the STAR file again.

    Parameters
    ----------
    star_path : str or path-like
        A RELION 3.0 STAR file (one data block with ``rlnImageName``) or a
        RELION 3.1+ one (``data_optics`` and ``data_particles`` blocks); or a
        cryoSPARC particle file (``.cs``, read with ``cryosparc-tools``, the
        ``cryosparc`` extra), whose fields become RELION's columns (see
        ``sklearn_kerdensom.io._cryosparc``).
    image_root : str or path-like, default=None
        Where to look for stacks that are not where the STAR file says. A stack
        named ``dir/stack.mrcs`` is looked for, in order: as written if the
        path is absolute; else, as RELION resolves it, relative to the current
        directory (a RELION project directory, where RELION writes paths such
        as ``Extract/job007/...`` from), then relative to the STAR file's
        directory and each directory above it (the project directory of a
        RELION or cryoSPARC job's file); then ``image_root/dir/stack.mrcs``
        and ``image_root/stack.mrcs``.
    passthrough : str or path-like, default=None
        For a ``.cs`` file: its cryoSPARC passthrough file, joined on ``uid``
        (often where the CTF is). None takes the one ``*passthrough*.cs``
        beside it, or among several its job's (``J12_passthrough_particles.cs``
        for ``J12_particles.cs``).

    Returns
    -------
    table : :class:`~sklearn.utils.Bunch`
        star_path : pathlib.Path
            The STAR file.
        image_root : pathlib.Path or None
            ``image_root``, user directory expanded.
        metadata : pandas.DataFrame of n_particles rows
            The particle table with the optics block's columns merged in, as
            returned by :func:`load_particles`.
        optics : pandas.DataFrame or None
            The optics block as read; None for a RELION 3.0 file.
        addresses : list of (int, str)
            For every particle, in row order: the image's index in its stack
            (counted from 1) and the stack's name as written in the STAR file
            (without RELION's ``:mrcs`` hint).
        stack_paths : dict of str to pathlib.Path
            Every stack name of ``addresses`` and the existing file it was
            found at.

    Raises
    ------
    FileNotFoundError
        If the STAR file, ``image_root`` or a stack it names does not exist.
    ValueError
        If the file has no ``rlnImageName`` column, a block it reads has a
        column twice, an image name cannot be parsed or an optics group is not
        defined.
    """
    star_path = Path(star_path)
    if not star_path.is_file():
        raise FileNotFoundError(f"particle file not found: {star_path}")
    image_root = _check_directory(image_root, "image_root")
    if star_path.suffix == ".cs":
        particles, optics = read_cryosparc_tables(star_path, passthrough)
    elif passthrough is not None:
        raise ValueError(f"passthrough is for cryoSPARC .cs particle files; {star_path} is not one.")
    else:
        particles, optics = _particle_and_optics_tables(starfile.read(star_path, always_dict=True), star_path)
    metadata = _merge_optics(particles, optics, star_path)
    addresses = [_parse_image_name(name, row, star_path) for row, name in enumerate(metadata[IMAGE_COLUMN])]
    stacks = dict.fromkeys(stack for _, stack in addresses)
    return Bunch(
        star_path=star_path,
        image_root=image_root,
        metadata=metadata,
        optics=optics,
        addresses=addresses,
        stack_paths={stack: _resolve_stack(stack, star_path, image_root) for stack in stacks},
    )


def _checked_table(star_path, image_root, passthrough=None):
    """The particle table of a STAR file path, or the one given (a :func:`read_particle_table` Bunch)."""
    if not isinstance(star_path, Mapping):
        return read_particle_table(star_path, image_root=image_root, passthrough=passthrough)
    table = star_path
    missing = [key for key in _TABLE_KEYS if key not in table]
    if missing:
        raise ValueError(
            "star_path must be a STAR file or the result of read_particle_table; got a "
            f"{type(table).__name__} without {', '.join(repr(key) for key in missing)}."
        )
    stacks = {stack for _, stack in table["addresses"]}
    if len(table["addresses"]) != len(table["metadata"]) or not stacks <= table["stack_paths"].keys():
        raise ValueError(
            f"the particle table has {len(table['metadata'])} metadata rows and {len(table['addresses'])} "
            f"image addresses, in {len(stacks)} stacks of which stack_paths has "
            f"{len(stacks & table['stack_paths'].keys())}; pass a table of read_particle_table as it came."
        )
    image_root, table_root = _check_directory(image_root, "image_root"), table.get("image_root")
    if image_root is not None and (table_root is None or Path(table_root).resolve() != image_root.resolve()):
        raise ValueError(
            f"image_root={str(image_root)!r} differs from the one the particle table's stacks were found "
            f"with ({table_root}); pass image_root to read_particle_table instead."
        )
    return table


CTF_CORRECTIONS = ("auto", "phase-flip", "none")


def load_particles(
    star_path,
    *,
    image_root=None,
    passthrough=None,
    ctf="none",
    align=True,
    pixel_size=None,
    scratch_dir=None,
    n_jobs=None,
    progress=None,
):
    """Load the particle images and metadata of a RELION STAR file or a cryoSPARC ``.cs`` file.

    Parameters
    ----------
    star_path : str, path-like or :class:`~sklearn.utils.Bunch`
        A particle file as :func:`read_particle_table` reads it (RELION STAR
        or cryoSPARC ``.cs``), or such a file already read by
        :func:`read_particle_table`, whose stacks are then read where it found
        them.
    image_root : str or path-like, default=None
        Where to look for stacks that are not where the file says, as in
        :func:`read_particle_table`. With a table of
        :func:`read_particle_table`, None or the ``image_root`` it was read
        with.
    passthrough : str or path-like, default=None
        A ``.cs`` file's passthrough file, as in :func:`read_particle_table`.
    ctf : {"none", "phase-flip", "auto"}, default="none"
        CTF correction, before alignment (the CTF's astigmatism is in the
        micrograph's frame): ``"phase-flip"`` flips the phases of every image
        by the sign of its CTF (:mod:`sklearn_kerdensom.ctf`, RELION's
        conventions) unless its optics group says the images are already
        phase-flipped or CTF-premultiplied; ``"auto"`` does the same when the
        file has CTF parameters, and nothing when it has none.
    align : bool, default=True
        Bring the images to the common frame (centred, in-plane angle 0) with
        the alignment in the file, by
        :func:`sklearn_kerdensom.alignment.apply_alignment`.
    pixel_size : float, default=None
        Pixel size in Å, overriding the file's. Needed when the file has
        origins in Å but no pixel size.
    scratch_dir : str or path-like, default=None
        A directory for the images: they are read, checked and aligned chunk
        by chunk into a memory map of a temporary file there (deleted with
        the array), so that a particle set larger than memory can be
        classified. None keeps them in memory (aligned in place, one copy).
        :class:`~sklearn_kerdensom.MaskVectorizer` writes the vectors of such
        images to a temporary file in :func:`tempfile.gettempdir` (``TMPDIR``),
        which ``kerdensom classify --scratch`` also sets.
    n_jobs : int, default=None
        Threads that align the images (joblib's convention: None is 1 unless
        in a ``joblib.parallel_config`` context, -1 is all processors).
    progress : callable, default=None
        Called as ``progress(stage, n_images)`` each time a chunk of
        ``n_images`` has been read (``stage="read"``), CTF-corrected
        (``stage="ctf"``) or aligned (``stage="align"``), e.g. to move a
        progress bar; each stage adds up to the number of particles.

    Returns
    -------
    particles : :class:`~sklearn.utils.Bunch`
        images : ndarray of shape (n_particles, height, width), float32
            In STAR row order; aligned when ``align=True``. A
            :class:`numpy.memmap` when ``scratch_dir`` is given.
        metadata : pandas.DataFrame of n_particles rows
            The particle table, with the optics block's columns merged in on
            ``rlnOpticsGroup``. ``metadata.attrs["relion_optics"]`` keeps the
            optics block (dict of column lists) for
            :func:`write_classification`.
        optics : pandas.DataFrame or None
            The optics block as read; None for a RELION 3.0 file.
        pixel_size : float or None
            Å per pixel: the ``pixel_size`` argument, else
            ``rlnImagePixelSize``, else ``rlnDetectorPixelSize`` (µm) * 1e4 /
            ``rlnMagnification``, else the MRC header's voxel size when
            positive; None when none is known.
        shifts : ndarray of shape (n_particles, 2), float64
            Origin offsets in pixels, x then y, with the meaning of
            ``rlnOriginX/Y`` (``rlnOriginX/YAngst`` divided by the pixel size).
            Missing columns read as 0.
        psi : ndarray of shape (n_particles,), float64
            In-plane angle ``rlnAnglePsi`` in degrees; 0 when missing.
        phase_flipped : ndarray of shape (n_particles,), bool
            The particles whose phases this call flipped.

    Raises
    ------
    FileNotFoundError
        If the STAR file, ``image_root``, ``scratch_dir`` or a stack it names
        does not exist.
    ValueError
        If the file has no ``rlnImageName`` column, a block it reads has a
        column twice, an image index is out of its stack, a stack of several
        images is named without an image number, a stack's header
        does not match its size, the images differ in size, a pixel is NaN or
        infinite, origins are in Å but no pixel size is known, or ``ctf`` is
        ``"phase-flip"`` and the file has no CTF parameters or no pixel size
        is known.
    """
    if ctf not in CTF_CORRECTIONS:
        raise ValueError(f"ctf must be one of {', '.join(map(repr, CTF_CORRECTIONS))}; got {ctf!r}.")
    if not isinstance(align, (bool, np.bool_)):
        raise ValueError(f"align must be True or False; got {align!r}.")
    scratch_dir = _check_directory(scratch_dir, "scratch_dir")
    pixel_size = _check_pixel_size(pixel_size)
    table = _checked_table(star_path, image_root, passthrough)
    star_path, metadata, addresses = table["star_path"], table["metadata"], table["addresses"]
    ctf_parameters, flips = _ctf_correction(metadata, ctf, star_path)

    report = (lambda stage: None) if progress is None else (lambda stage: partial(progress, stage))
    images, header_pixel_size = _read_images(
        addresses,
        _unnumbered(metadata[IMAGE_COLUMN]),
        star_path,
        table["stack_paths"],
        scratch_dir,
        report("read"),
    )
    _check_finite_images(images, addresses, star_path)

    if pixel_size is None:
        pixel_size = _pixel_size_from_metadata(metadata, star_path)
    if pixel_size is None:
        pixel_size = header_pixel_size
    shifts = _shifts_in_pixels(metadata, pixel_size, star_path)
    psi = _numeric_column(metadata, "rlnAnglePsi", star_path)
    if flips.any():
        if pixel_size is None:
            raise ValueError(
                f"{star_path}: the CTF correction needs the pixel size, which neither the file nor the "
                "MRC headers give; pass pixel_size."
            )
        flip_phases_into(images, ctf_parameters, pixel_size, flips, report("ctf"))
    if align:
        # In place: the images are this function's own array, and a second copy would double the memory.
        _align_into(
            images,
            *_alignment_parameters(len(images), shifts, psi, None),
            out=images,
            n_jobs=n_jobs,
            progress=report("align"),
        )
    return Bunch(
        images=images,
        metadata=metadata,
        optics=table["optics"],
        pixel_size=pixel_size,
        shifts=shifts,
        psi=psi,
        phase_flipped=flips,
    )


def _ctf_correction(metadata, ctf, star_path):
    """The CTF parameters (None without correction) and the particles that ``ctf`` (a mode of
    :func:`load_particles`) asks to phase-flip, checked before any image is read."""
    if ctf == "none" or (ctf == "auto" and not has_ctf(metadata)):
        return None, np.zeros(len(metadata), dtype=bool)
    try:
        parameters = CTFParameters.from_table(metadata)
    except ValueError as error:
        raise ValueError(f"{star_path}: {error}") from None
    return parameters, rows_to_flip(metadata)


def _check_directory(directory, name):
    if directory is None:
        return None
    directory = Path(directory).expanduser()
    if not directory.is_dir():
        raise FileNotFoundError(f"{name} is not an existing directory: {directory}")
    return directory


def _check_indices(indices, unnumbered, rows, n_images, stack, star_path):
    if n_images > 1 and unnumbered.any():
        # RELION reads a bare name as a whole file: image 1 of a stack for every such particle is wrong.
        row = rows[np.flatnonzero(unnumbered)[0]]
        raise ValueError(
            f"{star_path}: particle row {row} (0-based) names stack {stack!r} without an image number, but "
            f"it holds {n_images} images; name each particle's image as N@{stack} (N from 1)."
        )
    bad = np.flatnonzero((indices < 1) | (indices > n_images))
    if bad.size:
        row, index = rows[bad[0]], indices[bad[0]]
        raise ValueError(
            f"{star_path}: particle row {row} (0-based) asks for image {index} of stack {stack!r}, which "
            f"holds {n_images} image(s); indices count from 1."
        )


def _new_images(shape, scratch_dir):
    """An uninitialised float32 array, in memory or (``scratch_dir``) in a temporary memory-mapped file."""
    if scratch_dir is None:
        return np.empty(shape, dtype=np.float32)
    return temporary_memmap(shape, np.float32, "kerdensom-images-", scratch_dir)


def _image_chunks(n_images, image_shape):
    """Slices over the images, so that no temporary holds more than a chunk of them."""
    return sample_chunks(n_images, math.prod(image_shape), 1)


def _read_images(addresses, unnumbered, star_path, stack_paths, scratch_dir, progress=None):
    """Images (n, h, w) float32 in row order, and the stacks' common voxel size (None if unset).

    ``unnumbered`` (see :func:`._star._unnumbered`) marks the rows named without an image number;
    ``stack_paths`` maps every stack name of ``addresses`` to its file.
    """
    rows_by_stack = {}
    for row, (_, stack) in enumerate(addresses):
        rows_by_stack.setdefault(stack, []).append(row)
    indices = np.array([index for index, _ in addresses])

    images, first_stack, voxel_sizes = None, None, set()
    for stack, rows in rows_by_stack.items():
        stack_images, voxel_size = _map_stack(stack_paths[stack])
        rows = np.asarray(rows)
        _check_indices(indices[rows], unnumbered[rows], rows, stack_images.shape[0], stack, star_path)
        if images is None:
            images = _new_images((len(addresses), *stack_images.shape[1:]), scratch_dir)
            first_stack = stack
        elif stack_images.shape[1:] != images.shape[1:]:
            raise ValueError(
                f"{star_path}: images differ in size: {stack!r} holds {stack_images.shape[1:]} pixel "
                f"images, {first_stack!r} {images.shape[1:]}; all particles must have the same size."
            )
        # Fancy indexing a memmap reads just these images from disk, a chunk at a time.
        for chunk in _image_chunks(len(rows), stack_images.shape[1:]):
            images[rows[chunk]] = stack_images[indices[rows[chunk]] - 1]
            if progress is not None:
                progress(len(rows[chunk]))
        voxel_sizes.add(voxel_size)
    header_pixel_size = voxel_sizes.pop() if len(voxel_sizes) == 1 else None
    return images, (header_pixel_size if header_pixel_size and header_pixel_size > 0 else None)


def _check_finite_images(images, addresses, star_path):
    for chunk in _image_chunks(len(images), images.shape[1:]):
        finite = np.isfinite(images[chunk]).all(axis=(1, 2))
        if not finite.all():
            row = chunk.start + int(np.flatnonzero(~finite)[0])
            index, stack = addresses[row]
            raise ValueError(
                f"{star_path}: the image of particle row {row} (0-based; image {index} of {stack!r}) has "
                "NaN or infinite pixels."
            )
