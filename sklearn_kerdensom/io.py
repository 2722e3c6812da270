"""Read RELION particle sets and write the outputs of a classification.

A particle set is a RELION STAR file whose ``rlnImageName`` column addresses
images in MRC stacks: ``000042@Extract/job007/Micrographs/mic001.mrcs`` is the
42nd image (counted from 1) of that stack. STAR files are parsed with
``starfile`` and MRC files with ``mrcfile``. Stacks are memory-mapped read
only, so only the images a STAR file names are read, and input files are never
written.
"""

import math
import warnings
from collections.abc import Mapping
from functools import partial
from pathlib import Path

import mrcfile
import numpy as np
import pandas as pd
import starfile
from sklearn.utils import Bunch

from ._chunks import sample_chunks
from ._samples import temporary_memmap
from .alignment import _align_into, _alignment_parameters
from .ctf import CTFParameters, flip_phases_into, has_ctf, rows_to_flip

IMAGE_COLUMN = "rlnImageName"
OPTICS_GROUP_COLUMN = "rlnOpticsGroup"

# The optics block travels with the merged metadata, so that writing the particle table back can split
# it out again. Stored as a dict of lists: ``attrs`` are compared with ``==`` by ``pd.concat``, which a
# DataFrame value would make ambiguous.
OPTICS_ATTR = "relion_optics"

OUTPUT_FILES = {
    "averages": "averages.mrcs",
    "representatives": "representatives.mrcs",
    "particles": "particles.star",
    "classes": "classes.star",
}


# --------------------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------------------


# The entries of read_particle_table's Bunch that load_particles reads.
_TABLE_KEYS = ("star_path", "metadata", "optics", "addresses", "stack_paths")


def read_particle_table(star_path, *, image_root=None):
    """Read the particle table of a RELION STAR file and find its stacks, without reading any image.

    Everything :func:`load_particles` checks before it reads pixels is checked
    here, so a caller can, for instance, list the input files before reading
    them, then pass the result to :func:`load_particles`, which does not parse
    the STAR file again.

    Parameters
    ----------
    star_path : str or path-like
        A RELION 3.0 STAR file (one data block with ``rlnImageName``) or a
        RELION 3.1+ one (``data_optics`` and ``data_particles`` blocks).
    image_root : str or path-like, default=None
        Where to look for stacks that are not where the STAR file says. A stack
        named ``dir/stack.mrcs`` is looked for, in order: as written if the
        path is absolute; else, as RELION resolves it, relative to the current
        directory (a RELION project directory, where RELION writes paths such
        as ``Extract/job007/...`` from), then relative to the STAR file's
        directory; then ``image_root/dir/stack.mrcs`` and
        ``image_root/stack.mrcs``.

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
        raise FileNotFoundError(f"STAR file not found: {star_path}")
    image_root = _check_directory(image_root, "image_root")
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


def _checked_table(star_path, image_root):
    """The particle table of a STAR file path, or the one given (a :func:`read_particle_table` Bunch)."""
    if not isinstance(star_path, Mapping):
        return read_particle_table(star_path, image_root=image_root)
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
    ctf="none",
    align=True,
    pixel_size=None,
    scratch_dir=None,
    n_jobs=None,
    progress=None,
):
    """Load the particle images and metadata of a RELION STAR file.

    Parameters
    ----------
    star_path : str, path-like or :class:`~sklearn.utils.Bunch`
        A RELION 3.0 STAR file (one data block with ``rlnImageName``) or a
        RELION 3.1+ one (``data_optics`` and ``data_particles`` blocks); or
        such a file already read by :func:`read_particle_table`, whose stacks
        are then read where it found them.
    image_root : str or path-like, default=None
        Where to look for stacks that are not where the STAR file says. A stack
        named ``dir/stack.mrcs`` is looked for, in order: as written if the
        path is absolute; else, as RELION resolves it, relative to the current
        directory (a RELION project directory, where RELION writes paths such
        as ``Extract/job007/...`` from), then relative to the STAR file's
        directory; then ``image_root/dir/stack.mrcs`` and
        ``image_root/stack.mrcs``. With a
        table of :func:`read_particle_table`, None or the ``image_root`` it was
        read with.
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
        column twice, an image index is out of its stack, a stack's header
        does not match its size, the images differ in size, a pixel is NaN or
        infinite, origins are in Å but no pixel size is known, or ``ctf`` is
        ``"phase-flip"`` and the file has no CTF parameters or no pixel size
        is known.
    """
    if ctf not in CTF_CORRECTIONS:
        raise ValueError(f"ctf must be one of {', '.join(map(repr, CTF_CORRECTIONS))}; got {ctf!r}.")
    scratch_dir = _check_directory(scratch_dir, "scratch_dir")
    pixel_size = _check_pixel_size(pixel_size)
    table = _checked_table(star_path, image_root)
    star_path, metadata, addresses = table["star_path"], table["metadata"], table["addresses"]
    ctf_parameters, flips = _ctf_correction(metadata, ctf, star_path)

    report = (lambda stage: None) if progress is None else (lambda stage: partial(progress, stage))
    images, header_pixel_size = _read_images(
        addresses, star_path, table["stack_paths"], scratch_dir, report("read")
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


def read_stack(path):
    """Memory-map the images of an MRC file, read only.

    Parameters
    ----------
    path : str or path-like
        An MRC stack (``.mrcs``; a 3-D file counts as a stack of 2-D images)
        or a 2-D MRC image.

    Returns
    -------
    images : numpy.memmap of shape (n_images, height, width)
        In the file's data type. Pixels are read from disk only when indexed;
        the array stays valid after this function returns.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"MRC file not found: {path}")
    images, _ = _map_stack(path)
    return images


def read_image_shape(path):
    """``(height, width)`` of the images of an MRC file, from its header alone (no pixel is read).

    Parameters
    ----------
    path : str or path-like
        An MRC stack or 2-D image.

    Returns
    -------
    shape : tuple of int
    """
    path = Path(path)
    problem = _mrc_header_problem(path)
    if problem is not None:
        raise ValueError(f"{path} is not a readable MRC file: {problem}.")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with mrcfile.mrcfile.MrcFile(path, mode="r", permissive=True, header_only=True) as mrc:
            return int(mrc.header.ny), int(mrc.header.nx)


def _check_directory(directory, name):
    if directory is None:
        return None
    directory = Path(directory).expanduser()
    if not directory.is_dir():
        raise FileNotFoundError(f"{name} is not an existing directory: {directory}")
    return directory


def _check_pixel_size(pixel_size):
    if pixel_size is None:
        return None
    pixel_size = float(pixel_size)
    if not (math.isfinite(pixel_size) and pixel_size > 0):
        raise ValueError(f"pixel_size must be a positive number of Å per pixel; got {pixel_size}.")
    return pixel_size


def _as_table(block):
    # starfile returns key/value (non-loop) blocks as dicts: one particle written without a loop.
    return block if isinstance(block, pd.DataFrame) else pd.DataFrame([block])


def _particle_and_optics_tables(blocks, star_path):
    """The block holding ``rlnImageName``, and the optics block (None if there is none)."""
    tables = {name: _as_table(block) for name, block in blocks.items()}
    with_images = [name for name, table in tables.items() if IMAGE_COLUMN in table.columns]
    if not with_images:
        found = ", ".join(f"data_{name}" for name in tables) or "none"
        raise ValueError(
            f"{star_path} has no data block with the image column '{IMAGE_COLUMN}' (blocks found: {found})."
        )
    particles = tables[with_images[0]]
    _check_unique_columns(particles, with_images[0], star_path)
    if len(particles) == 0:
        raise ValueError(f"{star_path}: the particle block data_{with_images[0]} has no rows.")
    optics_names = [
        name
        for name, table in tables.items()
        if name not in with_images and OPTICS_GROUP_COLUMN in table.columns
    ]
    if not optics_names:
        return particles, None
    optics_name = "optics" if "optics" in optics_names else optics_names[0]
    _check_unique_columns(tables[optics_name], optics_name, star_path)
    return particles, tables[optics_name]


def _check_unique_columns(table, block, star_path):
    # starfile keeps a repeated loop label as a second column of the same name, which then selects a
    # DataFrame instead of a column wherever it is used.
    repeated = table.columns[table.columns.duplicated()]
    if len(repeated):
        label = repeated[0]
        raise ValueError(
            f"{star_path}: block data_{block} has the column {label!r} "
            f"{int((table.columns == label).sum())} times; each column must appear once."
        )


def _merge_optics(particles, optics, star_path):
    """The particle table with each particle's optics group columns added; row order kept."""
    particles = particles.reset_index(drop=True)
    if optics is None:
        return particles
    if OPTICS_GROUP_COLUMN not in particles.columns:
        if len(optics) != 1:
            raise ValueError(
                f"{star_path}: the particle table has no '{OPTICS_GROUP_COLUMN}' column but the optics "
                f"block has {len(optics)} groups."
            )
        particles[OPTICS_GROUP_COLUMN] = optics[OPTICS_GROUP_COLUMN].iloc[0]
    if optics[OPTICS_GROUP_COLUMN].duplicated().any():
        raise ValueError(f"{star_path}: the optics block lists an optics group more than once.")
    unknown = ~particles[OPTICS_GROUP_COLUMN].isin(optics[OPTICS_GROUP_COLUMN])
    if unknown.any():
        row = int(np.flatnonzero(unknown)[0])
        raise ValueError(
            f"{star_path}: particle row {row} (0-based) is in optics group "
            f"{particles[OPTICS_GROUP_COLUMN].iloc[row]}, which the optics block does not define."
        )
    # A value given per particle is more specific than its group's, so it wins.
    shared = [c for c in optics.columns if c in particles.columns and c != OPTICS_GROUP_COLUMN]
    metadata = particles.merge(optics.drop(columns=shared), on=OPTICS_GROUP_COLUMN, how="left")
    metadata.attrs[OPTICS_ATTR] = optics.to_dict(orient="list")
    return metadata


def _parse_image_name(name, row, star_path):
    """``(index, stack)`` of an image name: ``NNNNNN@stack`` (index from 1) or a bare ``stack`` (index 1)."""
    if pd.isna(name) or not str(name).strip():
        raise ValueError(f"{star_path}: particle row {row} (0-based) has no {IMAGE_COLUMN}.")
    text = str(name).strip()
    index_text, at, stack = text.partition("@")
    if not at:
        index_text, stack = "1", text
    # RELION's file-type hint: "stack.mrc:mrcs" means "read stack.mrc as a stack".
    for hint in (":mrcs", ":mrc"):
        stack = stack.removesuffix(hint)
    try:
        index = int(index_text)
    except ValueError:
        raise ValueError(
            f"{star_path}: particle row {row} (0-based) has image name {text!r}, whose index "
            f"{index_text!r} is not an integer."
        ) from None
    if not stack:
        raise ValueError(f"{star_path}: particle row {row} (0-based) has image name {text!r} with no file.")
    return index, stack


def _stack_candidates(stack, star_dir, image_root):
    """Where a stack named in a STAR file may be, in the order they are tried: as RELION's programs look
    (an absolute path as it is, a relative one from the current directory, the project directory RELION
    runs in), then relative to the STAR file, then under ``image_root``."""
    written = Path(stack)
    candidates = [written] if written.is_absolute() else [Path.cwd() / written, star_dir / written]
    if image_root is not None:
        if not written.is_absolute():
            candidates.append(image_root / written)
        candidates.append(image_root / written.name)
    return list(dict.fromkeys(candidates))


def _resolve_stack(stack, star_path, image_root):
    candidates = _stack_candidates(stack, star_path.parent, image_root)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    looked = ", ".join(str(c) for c in candidates)
    hint = (
        ""
        if image_root is not None
        else " Run from the RELION project directory, or give where the stacks are now with image_root= "
        "(kerdensom classify --image-root DIR)."
    )
    raise FileNotFoundError(f"stack {stack!r} named in {star_path} was not found; looked at: {looked}.{hint}")


def _mrc_header_problem(path):
    """Why the header of an MRC file does not describe its data block, or None when it does.

    mrcfile maps a data block of the wrong size anyway, with only a warning, as sheared or garbage
    images (or fails with an OverflowError on a negative size), so the sizes are checked here first.
    """
    with warnings.catch_warnings():
        # The headers of older writers warn here; whether they are usable is decided below.
        warnings.simplefilter("ignore", RuntimeWarning)
        try:
            with mrcfile.mrcfile.MrcFile(path, mode="r", permissive=True, header_only=True) as mrc:
                header = mrc.header
        except (ValueError, OverflowError) as error:
            return str(error)
    sizes = {"nx": int(header.nx), "ny": int(header.ny), "nz": int(header.nz)}
    if mrcfile.utils.spacegroup_is_volume_stack(header.ispg):
        sizes["mz"] = int(header.mz)
    described = ", ".join(f"{name}={size}" for name, size in sizes.items())
    if min(sizes.values()) < 1:
        return f"its header gives the sizes {described}; expected positive sizes"
    try:
        dtype = mrcfile.utils.data_dtype_from_header(header)
    except ValueError as error:
        return f"its header gives data mode {int(header.mode)}, which is not an MRC mode ({error})"
    extended = int(header.nsymbt)
    after_header = Path(path).stat().st_size - header.nbytes
    if after_header < extended:
        return (
            f"its header gives an extended header of {extended} bytes, but the file has {after_header} bytes "
            f"after its {header.nbytes}-byte header"
        )
    expected = math.prod(mrcfile.utils.data_shape_from_header(header)) * dtype.itemsize
    if after_header - extended != expected:
        return (
            f"its header ({described}, mode {int(header.mode)}: {dtype.name}, extended header {extended} "
            f"bytes) calls for {expected} bytes of data, but the file holds {after_header - extended}"
        )
    return None


def _open_mrc(path):
    """An open read-only memory-mapped MRC file, accepting the headers of older writers."""
    problem = _mrc_header_problem(path)
    if problem is not None:
        raise ValueError(f"{path} is not a readable MRC file: {problem}.")
    try:
        return mrcfile.mmap(path, mode="r")
    except ValueError as strict_error:
        # Pre-MRC2014 writers often leave out the "MAP " ID or the machine stamp, which strict mrcfile
        # rejects; such a file is still usable when its data block can be mapped.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                mrc = mrcfile.mmap(path, mode="r", permissive=True)
            except ValueError as error:
                raise ValueError(f"{path} is not a readable MRC file: {error}") from strict_error
        if mrc.data is None:
            mrc.close()
            problems = "; ".join(str(w.message) for w in caught) or str(strict_error)
            raise ValueError(f"{path} is not a readable MRC file: {problems}") from strict_error
        return mrc


def _map_stack(path):
    """``(images, voxel_size)``: images (n, h, w) memory-mapped; voxel size x in Å (0 when unset)."""
    with _open_mrc(path) as mrc:
        images = mrc.data
        voxel_size = float(mrc.voxel_size.x)
    if images.ndim == 2:
        images = images[np.newaxis]
    if images.ndim != 3:
        raise ValueError(
            f"{path} holds {images.ndim}-D data of shape {images.shape}; expected a 2-D image or a stack "
            "of 2-D images."
        )
    if not (np.issubdtype(images.dtype, np.integer) or np.issubdtype(images.dtype, np.floating)):
        raise ValueError(f"{path} holds {images.dtype} data; expected real-valued images.")
    return images, voxel_size


def _check_indices(indices, rows, n_images, stack, star_path):
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


def _read_images(addresses, star_path, stack_paths, scratch_dir, progress=None):
    """Images (n, h, w) float32 in row order, and the stacks' common voxel size (None if unset).

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
        _check_indices(indices[rows], rows, stack_images.shape[0], stack, star_path)
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


def _numeric_column(metadata, column, star_path):
    """A column as float64, zeros when the table lacks it."""
    if column not in metadata.columns:
        return np.zeros(len(metadata))
    values = pd.to_numeric(metadata[column], errors="coerce").to_numpy(dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        row = int(bad[0])
        raise ValueError(
            f"{star_path}: particle row {row} (0-based) has {column} = {metadata[column].iloc[row]!r}; "
            "expected a finite number."
        )
    return values


def _unique_pixel_size(values, source, star_path):
    sizes = np.unique(values)
    if sizes.size > 1:
        raise ValueError(
            f"{star_path}: particles have different pixel sizes ({source}: {', '.join(map(str, sizes))} Å); "
            "classify them separately or pass pixel_size=."
        )
    if not sizes[0] > 0:
        raise ValueError(f"{star_path}: {source} gives a pixel size of {sizes[0]} Å; expected > 0.")
    return float(sizes[0])


def _pixel_size_from_metadata(metadata, star_path):
    """Å per pixel from ``rlnImagePixelSize`` or the RELION 3.0 detector columns; None without them."""
    if "rlnImagePixelSize" in metadata.columns:
        values = _numeric_column(metadata, "rlnImagePixelSize", star_path)
        return _unique_pixel_size(values, "rlnImagePixelSize", star_path)
    if {"rlnDetectorPixelSize", "rlnMagnification"} <= set(metadata.columns):
        # The detector pixel is in µm: 1 µm = 1e4 Å.
        detector = _numeric_column(metadata, "rlnDetectorPixelSize", star_path)
        magnification = _numeric_column(metadata, "rlnMagnification", star_path)
        with np.errstate(divide="ignore", invalid="ignore"):
            values = detector * 1e4 / magnification
        return _unique_pixel_size(values, "rlnDetectorPixelSize * 1e4 / rlnMagnification", star_path)
    return None


def _shifts_in_pixels(metadata, pixel_size, star_path):
    """Origin offsets (n, 2) in pixels, x then y; RELION 3.1 Å columns take precedence."""
    if {"rlnOriginXAngst", "rlnOriginYAngst"} & set(metadata.columns):
        shifts = np.column_stack(
            [
                _numeric_column(metadata, "rlnOriginXAngst", star_path),
                _numeric_column(metadata, "rlnOriginYAngst", star_path),
            ]
        )
        if not shifts.any():
            return shifts
        if pixel_size is None:
            raise ValueError(
                f"{star_path} gives origins in Å (rlnOriginXAngst/rlnOriginYAngst) but no pixel size "
                "(no rlnImagePixelSize, no detector pixel size, no MRC voxel size); pass pixel_size=."
            )
        return shifts / pixel_size
    return np.column_stack(
        [
            _numeric_column(metadata, "rlnOriginX", star_path),
            _numeric_column(metadata, "rlnOriginY", star_path),
        ]
    )


# --------------------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------------------


def write_classification(
    out_dir,
    *,
    averages,
    representatives,
    labels,
    node_positions,
    metadata=None,
    pixel_size=None,
    overwrite=False,
):
    """Write class images, per-particle classes and per-class statistics.

    Writes four files into ``out_dir`` (created if missing):

    - ``averages.mrcs``, ``representatives.mrcs``: float32 MRC image stacks,
      one image per class in class order;
    - ``particles.star``: the particle table with ``rlnClassNumber`` (class,
      counted from 1) and ``kerdensomMapX``/``kerdensomMapY`` (map position of
      the class) added; with a ``data_optics`` block when the metadata came
      from a RELION 3.1+ file through :func:`load_particles`;
    - ``classes.star``: one row per class, empty classes included, with
      ``rlnClassNumber``, ``rlnReferenceImage`` (``NNNNNN@averages.mrcs``,
      relative to ``out_dir``), ``rlnClassDistribution`` (fraction of
      particles), ``kerdensomClassCount``, ``kerdensomMapX``,
      ``kerdensomMapY``.

    Parameters
    ----------
    out_dir : str or path-like
        Output directory.
    averages : array-like of shape (n_classes, height, width)
        Class averages.
    representatives : array-like of shape (n_classes, height, width)
        One representative image per class.
    labels : array-like of int of shape (n_particles,)
        Class of each particle, counted from 0.
    node_positions : array-like of shape (n_classes, 2)
        Map position of each class: x (column), then y (row).
    metadata : pandas.DataFrame of n_particles rows, default=None
        The particle table, e.g. ``load_particles(...).metadata``; its columns
        are kept (``rlnClassNumber`` is replaced). Without it the table has
        only ``kerdensomParticleIndex``, the particle's row counted from 0.
    pixel_size : float, default=None
        Å per pixel, written as the stacks' voxel size.
    overwrite : bool, default=False
        Replace existing output files. Otherwise, if any of the four exists,
        nothing is written.

    Returns
    -------
    paths : dict of str to pathlib.Path
        The written files, by key ``"averages"``, ``"representatives"``,
        ``"particles"``, ``"classes"``.

    Raises
    ------
    FileExistsError
        If an output file exists and ``overwrite`` is False.
    ValueError
        If the shapes of the inputs disagree or a label is not a class.
    """
    averages = _check_class_images(averages, "averages")
    representatives = _check_class_images(representatives, "representatives")
    if representatives.shape != averages.shape:
        raise ValueError(
            f"representatives must have the shape of averages {averages.shape}; got {representatives.shape}."
        )
    n_classes = averages.shape[0]
    labels = _check_labels(labels, n_classes)
    node_positions = _check_node_positions(node_positions, n_classes)
    pixel_size = _check_pixel_size(pixel_size)
    particles, optics = _particle_table(metadata, labels, node_positions)
    classes = _class_table(labels, node_positions)

    paths = _output_paths(out_dir, overwrite)
    paths["averages"].parent.mkdir(parents=True, exist_ok=True)
    _write_stack(paths["averages"], averages, pixel_size)
    _write_stack(paths["representatives"], representatives, pixel_size)
    particle_blocks = (
        {"particles": particles} if optics is None else {"optics": optics, "particles": particles}
    )
    starfile.write(particle_blocks, paths["particles"], float_format=_float_text)
    starfile.write({"classes": classes}, paths["classes"], float_format=_float_text)
    return paths


def _check_class_images(images, name):
    images = np.asarray(images)
    if images.ndim != 3 or images.shape[0] < 1:
        raise ValueError(f"{name} must have shape (n_classes, height, width); got shape {images.shape}.")
    return images


def _check_labels(labels, n_classes):
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.size == 0:
        raise ValueError(f"labels must be a non-empty 1-D array of classes; got shape {labels.shape}.")
    if not np.issubdtype(labels.dtype, np.integer):
        if not (np.issubdtype(labels.dtype, np.floating) and np.all(labels == np.round(labels))):
            raise ValueError(f"labels must be integer classes; got {labels.dtype} values.")
    bad = np.flatnonzero((labels < 0) | (labels >= n_classes))
    if bad.size:
        raise ValueError(
            f"labels[{bad[0]}] = {labels[bad[0]]} is not a class: expected 0 to {n_classes - 1} "
            f"({n_classes} classes, from the averages)."
        )
    return labels.astype(np.int64)


def _check_node_positions(node_positions, n_classes):
    node_positions = np.asarray(node_positions, dtype=np.float64)
    if node_positions.shape != (n_classes, 2):
        raise ValueError(f"node_positions must have shape ({n_classes}, 2); got {node_positions.shape}.")
    if not np.all(np.isfinite(node_positions)):
        raise ValueError("node_positions contain NaN or infinite values.")
    return node_positions


def _optics_from_attrs(metadata):
    optics = metadata.attrs.get(OPTICS_ATTR)
    return None if optics is None else pd.DataFrame(optics)


def _particle_table(metadata, labels, node_positions):
    """The particle table to write, and the optics block to write with it (None if there is none)."""
    if metadata is None:
        table, optics = pd.DataFrame({"kerdensomParticleIndex": np.arange(labels.size)}), None
    else:
        if not isinstance(metadata, pd.DataFrame):
            raise ValueError(f"metadata must be a pandas DataFrame; got {type(metadata).__name__}.")
        if len(metadata) != labels.size:
            raise ValueError(f"metadata has {len(metadata)} rows but labels has {labels.size} particles.")
        optics = _optics_from_attrs(metadata)
        # A new frame, so the caller's metadata is left as it was.
        table = metadata.reset_index(drop=True)
        if optics is not None:
            merged = [c for c in optics.columns if c != OPTICS_GROUP_COLUMN and c in table.columns]
            table = table.drop(columns=merged)
        table.attrs = {}
    table["rlnClassNumber"] = labels + 1
    table["kerdensomMapX"] = node_positions[labels, 0]
    table["kerdensomMapY"] = node_positions[labels, 1]
    return table, optics


def _class_table(labels, node_positions):
    n_classes = node_positions.shape[0]
    counts = np.bincount(labels, minlength=n_classes)
    numbers = np.arange(1, n_classes + 1)
    return pd.DataFrame(
        {
            "rlnClassNumber": numbers,
            "rlnReferenceImage": [f"{number:06d}@{OUTPUT_FILES['averages']}" for number in numbers],
            "rlnClassDistribution": counts / labels.size,
            "kerdensomClassCount": counts,
            "kerdensomMapX": node_positions[:, 0],
            "kerdensomMapY": node_positions[:, 1],
        }
    )


def _output_paths(out_dir, overwrite):
    """The four output paths; refuses, before anything is written, to replace existing files."""
    out_dir = Path(out_dir)
    paths = {key: out_dir / name for key, name in OUTPUT_FILES.items()}
    existing = [str(path) for path in paths.values() if path.exists()]
    if existing and not overwrite:
        raise FileExistsError(
            f"output file {existing[0]} already exists (existing: {', '.join(existing)}); nothing was "
            "written. Pass overwrite=True to replace them."
        )
    return paths


def _write_stack(path, images, pixel_size):
    with mrcfile.new(path, overwrite=True) as mrc:
        mrc.set_data(np.array(images, dtype=np.float32, order="C"))
        # ispg = 0 marks a stack of 2-D images (RELION's .mrcs), not a volume.
        mrc.set_image_stack()
        if pixel_size is not None:
            mrc.voxel_size = pixel_size


def _float_text(value):
    # Python's repr is the shortest text that reads back to the same float, so a written table reads back
    # identical; unlike "%g" it keeps a "." or an exponent, so float columns stay float columns.
    return repr(float(value))


def write_class_averager(averager, out_dir, *, metadata=None, pixel_size=None, overwrite=False):
    """Write the outputs of a fitted :class:`~sklearn_kerdensom.ClassAverager` (see write_classification).

    The representatives are the averager's ``representatives_`` (the code
    vectors as images); the map positions its ``node_positions_`` (classes in a
    row when the clusterer has no map).

    Parameters
    ----------
    averager : fitted ClassAverager
    out_dir : str or path-like
    metadata : pandas.DataFrame, default=None
        The particle table of the images it was fitted on, e.g.
        ``load_particles(...).metadata``.
    pixel_size : float, default=None
        Å per pixel.
    overwrite : bool, default=False

    Returns
    -------
    paths : dict of str to pathlib.Path
    """
    if averager.representatives_ is None:
        raise ValueError(
            "the averager has no representatives_ (its clusterer has no cluster_centers_, or a pipeline step "
            "has no inverse_transform), so representatives.mrcs cannot be written."
        )
    n_classes = len(averager.averages_)
    default_positions = np.column_stack([np.arange(n_classes), np.zeros(n_classes)])
    return write_classification(
        out_dir,
        averages=averager.averages_,
        representatives=averager.representatives_,
        labels=averager.labels_,
        node_positions=getattr(averager, "node_positions_", default_positions),
        metadata=metadata,
        pixel_size=pixel_size,
        overwrite=overwrite,
    )


def _read_rows(path, start, stop):
    with _open_mrc(path) as mrc:
        data = mrc.data if mrc.data.ndim == 3 else mrc.data[np.newaxis]
        return np.array(data[start:stop], dtype=np.float32)


def dask_stack(path, *, images_per_chunk=1000):
    """An MRC stack as a lazy Dask array chunked along images.

    Each chunk is read by its own task, which opens the file memory-mapped and
    reads just its images, so the array can be handed to a ``dask.distributed``
    cluster whose workers see the same file system.

    Parameters
    ----------
    path : str or path-like
        An MRC stack (``.mrcs``) or 2-D image.
    images_per_chunk : int, default=1000

    Returns
    -------
    images : dask.array.Array of shape (n_images, height, width), float32
    """
    import dask
    import dask.array as da

    path = Path(path).resolve()
    if not path.is_file():
        raise FileNotFoundError(f"MRC file not found: {path}")
    if images_per_chunk < 1:
        raise ValueError(f"images_per_chunk must be >= 1; got {images_per_chunk}.")
    shape = read_stack(path).shape
    blocks = [
        da.from_delayed(
            dask.delayed(_read_rows)(path, start, min(start + images_per_chunk, shape[0])),
            shape=(min(start + images_per_chunk, shape[0]) - start, *shape[1:]),
            dtype=np.float32,
        )
        for start in range(0, shape[0], images_per_chunk)
    ]
    return da.concatenate(blocks, axis=0)
