"""Subsets of a classified particle set: the particles of chosen classes, as a STAR file that RELION,
cryoSPARC and this package read."""

from pathlib import Path

import numpy as np
import starfile
from sklearn.utils import Bunch

from ._outputs import _float_text, _optics_from_attrs
from ._particles import read_particle_table
from ._star import OPTICS_GROUP_COLUMN, relocate_image_names

CLASS_COLUMN = "rlnClassNumber"


def _checked_class_numbers(classes):
    """The distinct class numbers of ``classes``, sorted; a ValueError unless they are integers >= 1."""
    if isinstance(classes, (str, bytes)) or not np.iterable(classes):
        raise ValueError(f"classes must be a list of class numbers (integers from 1); got {classes!r}.")
    classes = list(classes)  # once: an iterator is consumed by reading it
    numbers = np.asarray(classes)
    whole = numbers.size and (
        np.issubdtype(numbers.dtype, np.integer)
        or (np.issubdtype(numbers.dtype, np.floating) and np.all(np.isfinite(numbers) & (numbers % 1 == 0)))
    )
    if not whole or numbers.ndim != 1 or np.any(numbers < 1):
        raise ValueError(f"classes must be class numbers, integers from 1; got {classes!r}.")
    return sorted({int(number) for number in numbers})


def select_classes(star_path, classes, *, image_root=None):
    """The particles of some classes of a classified particle file.

    Parameters
    ----------
    star_path : str or path-like
        A particle file with ``rlnClassNumber``: the ``particles.star`` of a ``kerdensom`` run, or a
        RELION classification's ``run_data.star``.
    classes : iterable of int
        Class numbers, as ``rlnClassNumber`` counts them (from 1); at least one.
    image_root : str or path-like, default=None
        As in :func:`read_particle_table`.

    Returns
    -------
    subset : :class:`~sklearn.utils.Bunch`
        The entries of :func:`read_particle_table` for the selected particles only (their rows in
        order), plus ``classes``, the sorted class numbers.

    Raises
    ------
    ValueError
        If ``classes`` holds no class number or something else, the file has no ``rlnClassNumber``,
        or no particle is in the classes.
    """
    classes = _checked_class_numbers(classes)
    table = read_particle_table(star_path, image_root=image_root)
    if CLASS_COLUMN not in table.metadata.columns:
        raise ValueError(f"{star_path} has no {CLASS_COLUMN} column: its particles are not classified.")
    keep = np.isin(table.metadata[CLASS_COLUMN].to_numpy(), classes)
    if not keep.any():
        raise ValueError(f"no particle of {star_path} is in class(es) {', '.join(map(str, classes))}.")
    metadata = table.metadata[keep].reset_index(drop=True)
    metadata.attrs = table.metadata.attrs
    addresses = [address for address, kept in zip(table.addresses, keep, strict=True) if kept]
    stacks = {stack for _, stack in addresses}
    return Bunch(
        **{
            **table,
            "metadata": metadata,
            "addresses": addresses,
            "stack_paths": {stack: path for stack, path in table.stack_paths.items() if stack in stacks},
        },
        classes=classes,
    )


def write_particle_star(table, path, *, header=None, overwrite=False):
    """Write a particle table as a RELION STAR file whose image names resolve from where it is written.

    Parameters
    ----------
    table : :class:`~sklearn.utils.Bunch`
        As returned by :func:`read_particle_table` or :func:`select_classes`.
    path : path-like
        The STAR file to write.
    header : str, default=None
        A comment line written first (without the ``#``).
    overwrite : bool, default=False
        Replace ``path`` if it exists; otherwise an existing file is a FileExistsError, and nothing is
        written.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(
            f"{path} already exists; nothing was written. Pass overwrite=True to replace it."
        )
    metadata = relocate_image_names(table, path.parent)
    optics = _optics_from_attrs(metadata)
    if optics is not None:
        metadata = metadata.drop(
            columns=[c for c in optics.columns if c != OPTICS_GROUP_COLUMN and c in metadata]
        )
    metadata.attrs = {}
    blocks = {"particles": metadata} if optics is None else {"optics": optics, "particles": metadata}
    starfile.write(blocks, path, float_format=_float_text)
    if header is not None:
        path.write_text(f"# {header}\n{path.read_text()}")
