"""RELION STAR tables: the particle and optics blocks, the stacks their image names address, and the
pixel size and origins they give.

``rlnImageName`` values such as ``000042@Extract/job007/Micrographs/mic001.mrcs``
are parsed into (index, stack) and the stacks found as RELION finds them
(current directory, then the STAR file's directory, then ``image_root``). The
optics block is merged into the particle table, and kept in its ``attrs`` so
that a written particle table can split it out again.
"""

import math
import os
from pathlib import Path

import numpy as np
import pandas as pd

IMAGE_COLUMN = "rlnImageName"
OPTICS_GROUP_COLUMN = "rlnOpticsGroup"

# The optics block travels with the merged metadata, so that writing the particle table back can split
# it out again. Stored as a dict of lists: ``attrs`` are compared with ``==`` by ``pd.concat``, which a
# DataFrame value would make ambiguous.
OPTICS_ATTR = "relion_optics"


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
    """``(index, stack)`` of an image name: ``NNNNNN@stack`` (index from 1) or a bare file name of one
    image (index 1; a stack of several is refused when it is read, see :func:`_unnumbered`)."""
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


def _unnumbered(names):
    """Whether each image name is a bare file name (no ``N@``), boolean array: :func:`_parse_image_name`
    reads it as the file's first image, which is only right for a file of one image."""
    return np.array(["@" not in str(name) for name in names], dtype=bool)


def _stack_candidates(stack, star_dir, image_root):
    """Where a stack named in a STAR file may be, in the order they are tried: as RELION's programs look
    (an absolute path as it is, a relative one from the current directory, the project directory RELION
    runs in), then relative to the STAR file's directory and each one above it, then under
    ``image_root``."""
    written = Path(stack)
    candidates = [written]
    if not written.is_absolute():
        # A job's file lies a directory or two below its project's (Class2D/job010/, P3/J12/).
        above = star_dir.absolute().parents
        candidates = [Path.cwd() / written, *(directory / written for directory in (star_dir, *above))]
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
    # cryoSPARC names its stacks from the project directory as RELION does (blob/path).
    project = "cryoSPARC" if star_path.suffix == ".cs" else "RELION"
    hint = (
        ""
        if image_root is not None
        else f" Run from the {project} project directory, or give where the stacks are now with image_root=."
    )
    raise FileNotFoundError(f"stack {stack!r} named in {star_path} was not found; looked at: {looked}.{hint}")


def _check_pixel_size(pixel_size):
    if pixel_size is None:
        return None
    pixel_size = float(pixel_size)
    if not (math.isfinite(pixel_size) and pixel_size > 0):
        raise ValueError(f"pixel_size must be a positive number of Å per pixel; got {pixel_size}.")
    return pixel_size


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


def path_for_star(path, star_directory):
    """How a STAR file in ``star_directory`` names the file ``path`` so that RELION and this package both
    find it: relative to the current directory (the project directory RELION resolves names from) when
    the file and the STAR file are both inside it, else absolute."""
    path = Path(os.path.abspath(path))
    project = Path(os.path.abspath(Path.cwd()))
    if path.is_relative_to(project) and Path(os.path.abspath(star_directory)).is_relative_to(project):
        return path.relative_to(project).as_posix()
    return path.as_posix()


def relocate_image_names(table, star_directory):
    """The particle table of ``table`` with image names that resolve from a STAR file in ``star_directory``.

    Parameters
    ----------
    table : :class:`~sklearn.utils.Bunch`
        As returned by :func:`read_particle_table`: its stacks were found, wherever the file named them.
    star_directory : str or path-like
        Where the new STAR file will be.

    Returns
    -------
    metadata : pandas.DataFrame
        A copy of ``table.metadata`` whose ``rlnImageName`` values are ``NNNNNN@path`` with ``path`` as
        :func:`path_for_star` gives it.
    """
    stacks = {stack: path_for_star(path, star_directory) for stack, path in table["stack_paths"].items()}
    metadata = table["metadata"].copy()
    metadata[IMAGE_COLUMN] = [f"{index:06d}@{stacks[stack]}" for index, stack in table["addresses"]]
    return metadata
