"""Writing the outputs of a classification: class stacks, the particle table with classes, the class
table."""

import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import starfile
from sklearn.utils.validation import check_is_fitted

from .._array_api import on_host
from ._mrc import _write_stack
from ._star import OPTICS_ATTR, OPTICS_GROUP_COLUMN, _check_pixel_size, path_for_star

OUTPUT_FILES = {
    "averages": "averages.mrcs",
    "representatives": "representatives.mrcs",
    "particles": "particles.star",
    "classes": "classes.star",
    "model": "run_model.star",
    "data": "run_data.star",
}
# The input's class numbers, which rlnClassNumber replaces.
PREVIOUS_CLASS_COLUMN = "kerdensomPreviousClassNumber"


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
    location=None,
):
    """Write class images, per-particle classes and per-class statistics.

    Writes six files into ``out_dir`` (created if missing):

    - ``averages.mrcs``, ``representatives.mrcs``: float32 MRC image stacks,
      one image per class in class order;
    - ``particles.star``: the particle table with ``rlnClassNumber`` (class,
      counted from 1) and ``kerdensomMapX``/``kerdensomMapY`` (map position of
      the class) added, the input's own ``rlnClassNumber`` kept as
      ``kerdensomPreviousClassNumber``; with a ``data_optics`` block when the
      metadata came from a RELION 3.1+ file through :func:`load_particles`;
    - ``classes.star``: one row per class, empty classes included, with
      ``rlnClassNumber``, ``rlnReferenceImage`` (``NNNNNN@.../averages.mrcs``),
      ``rlnClassDistribution`` (fraction of particles),
      ``kerdensomClassCount``, ``kerdensomMapX``, ``kerdensomMapY``;
    - ``run_model.star`` and ``run_data.star``: the pair RELION's class
      selection (``relion_display --class``, the Subset selection job) reads,
      as a 2D classification writes it: a ``model_general`` block and a
      ``model_classes`` block (``rlnReferenceImage``,
      ``rlnClassDistribution``, one row per class in class order), and the
      particle table (a hard link to ``particles.star``, or a copy where the
      file system has no links).

    ``rlnReferenceImage`` names ``averages.mrcs`` as RELION resolves names:
    relative to the current directory (the project directory) when
    ``location`` is inside it, else by its absolute path.

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
        Replace existing output files. Otherwise, if any of them exists,
        nothing is written.
    location : str or path-like, default=None
        The directory the files will finally be in, when ``out_dir`` is only
        where they are made (``kerdensom`` writes a run into a staging
        directory, then renames it); None is ``out_dir``.

    Returns
    -------
    paths : dict of str to pathlib.Path
        The written files, by the keys of ``OUTPUT_FILES``: ``"averages"``,
        ``"representatives"``, ``"particles"``, ``"classes"``, ``"model"``,
        ``"data"``.

    Raises
    ------
    FileExistsError
        If an output file exists and ``overwrite`` is False.
    ValueError
        If the shapes of the inputs disagree, an image holds NaN, infinities or complex values, or a
        label is not a class.
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
    location = Path(out_dir if location is None else location)
    references = path_for_star(location / OUTPUT_FILES["averages"], location)
    classes = _class_table(labels, node_positions, references)

    paths = _output_paths(out_dir, overwrite)
    paths["averages"].parent.mkdir(parents=True, exist_ok=True)
    _write_stack(paths["averages"], averages, pixel_size)
    _write_stack(paths["representatives"], representatives, pixel_size)
    particle_blocks = (
        {"particles": particles} if optics is None else {"optics": optics, "particles": particles}
    )
    starfile.write(particle_blocks, paths["particles"], float_format=_float_text)
    starfile.write({"classes": classes}, paths["classes"], float_format=_float_text)
    model = {
        "model_general": _model_general(averages.shape, pixel_size),
        "model_classes": classes[["rlnReferenceImage", "rlnClassDistribution", *classes.columns[3:]]],
    }
    starfile.write(model, paths["model"], float_format=_float_text)
    _link_or_copy(paths["particles"], paths["data"])
    return paths


def _model_general(shape, pixel_size):
    """The ``model_general`` block of a 2D classification's model STAR file."""
    return {
        "rlnReferenceDimensionality": 2,
        "rlnDataDimensionality": 2,
        "rlnOriginalImageSize": shape[-1],
        "rlnCurrentImageSize": shape[-1],
        "rlnPixelSize": 0.0 if pixel_size is None else pixel_size,
        "rlnNrClasses": shape[0],
        "rlnNrBodies": 1,
        "rlnNrGroups": 1,
    }


def _link_or_copy(source, target):
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def _check_class_images(images, name):
    """Images as written to an MRC stack (float32): real, finite and within float32's range."""
    images = np.asarray(images)
    if images.ndim != 3 or images.shape[0] < 1:
        raise ValueError(f"{name} must have shape (n_classes, height, width); got shape {images.shape}.")
    if not (np.issubdtype(images.dtype, np.integer) or np.issubdtype(images.dtype, np.floating)):
        raise ValueError(f"{name} must hold real numbers; got {images.dtype}.")
    largest = float(np.finfo(np.float32).max)
    if not np.all(np.isfinite(images)) or np.any(np.abs(images) > largest):
        raise ValueError(f"{name} must be finite numbers within float32's range (the MRC file's), no NaN.")
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
    if "rlnClassNumber" in table.columns:
        table[PREVIOUS_CLASS_COLUMN] = table.pop("rlnClassNumber")
    table["rlnClassNumber"] = labels + 1
    table["kerdensomMapX"] = node_positions[labels, 0]
    table["kerdensomMapY"] = node_positions[labels, 1]
    return table, optics


def _class_table(labels, node_positions, references):
    n_classes = node_positions.shape[0]
    counts = np.bincount(labels, minlength=n_classes)
    numbers = np.arange(1, n_classes + 1)
    return pd.DataFrame(
        {
            "rlnClassNumber": numbers,
            "rlnReferenceImage": [f"{number:06d}@{references}" for number in numbers],
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


def _float_text(value):
    # Python's repr is the shortest text that reads back to the same float, so a written table reads back
    # identical; unlike "%g" it keeps a "." or an exponent, so float columns stay float columns.
    return repr(float(value))


def write_class_averager(
    averager, out_dir, *, metadata=None, pixel_size=None, overwrite=False, location=None
):
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
    location : str or path-like, default=None
        As in :func:`write_classification`.

    Returns
    -------
    paths : dict of str to pathlib.Path
    """
    check_is_fitted(averager)
    averager = on_host(averager)  # a map fitted on a GPU is written from host copies
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
        location=location,
    )
