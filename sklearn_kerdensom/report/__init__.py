"""An interactive report of a fitted map: one HTML file to open from disk, and its display in a notebook.

The report shows the classes on the map's real topology (rectangular, or hexagonal with odd rows shifted),
with their class numbers (``rlnClassNumber`` of the STAR files) and sizes; it switches to the
representatives and to the U-matrix; hovering a class shows its size and its distances to its
neighbours, clicking it shows its average at full size and a gallery of its members (the nearest and
the farthest from its code vector, so that junk shows up); classes picked by clicking become the
``kerdensom select`` command that writes their particles. Below are the run's parameters, timings and
annealing history.

The file is self-contained: images are embedded as PNG data URIs, style and script are inline, and it
fetches nothing, so it works offline, from disk, and as an email attachment. ``kerdensom classify`` and
``kerdensom demo`` write it as ``report.html``; :func:`write_report` writes it for any fitted
:class:`~sklearn_kerdensom.ClassAverager` of a :class:`~sklearn_kerdensom.KerDenSOM`, and
:func:`map_report` returns it as an object that a notebook displays inline.

Its size (measured by ``benchmarks/bench_report.py``) is dominated by the member images: each class
shows at most ``n_nearest + n_farthest`` of them, binned to ``member_size`` pixels.
"""

import io
import shlex
from html import escape
from pathlib import Path

import numpy as np

from .._array_api import host_array, on_host
from ._content import (
    check_images,
    fit_summary,
    fitted_map,
    map_geometry,
    mean_distances,
    member_distances,
    member_sample,
    neighbour_distances,
)
from ._images import binning_factor, data_uri, png_data_uris
from ._page import page, tile_layout, viridis

__all__ = ["MapReport", "map_report", "report_sizes", "write_report"]

# Saturating this percentage of each end of a particle's grey levels keeps its noise readable.
_MEMBER_CLIP_PERCENT = 0.5
# What a report shows of each class of a map of up to _BUDGET_CLASSES classes; larger maps show less, so
# that their reports hold about as many bytes of images (report_sizes).
_BUDGET_CLASSES = 100
_MEMBERS_PER_END = 12
_IMAGE_SIZE = 128
_MEMBER_SIZE = 64
_SMALLEST_SIDE = 16
# Member images read and encoded at a time: 32 MiB of float64 at 128 x 128 px.
_IMAGES_PER_BATCH = 256
# Entries of a summary shown in tables of their own, or not at all.
_SUMMARY_SECTIONS = ("parameters", "timings", "versions", "command")
_NOT_SHOWN = ("history", "class_sizes", "files", "written_by")


class MapReport:
    """A map report: its HTML, to save as a file or to show in a notebook.

    Made by :func:`map_report`. In Jupyter, a ``MapReport`` displays inline (through its
    ``_repr_html_``): the page inside an ``<iframe srcdoc=...>``, where its script runs as it does in a
    browser. A fitted estimator keeps scikit-learn's own HTML representation.

    Parameters
    ----------
    html : str
        The report's page.
    height : int, default=900
        Height of the notebook frame, in CSS pixels.

    Attributes
    ----------
    html : str
    height : int
    """

    def __init__(self, html, height=900):
        self.html = html
        self.height = height

    @property
    def nbytes(self):
        """Size of the page in bytes (UTF-8), as a file."""
        return len(self.html.encode("utf-8"))

    def save(self, path, *, overwrite=False):
        """Write the page to ``path``.

        Parameters
        ----------
        path : str or path-like
        overwrite : bool, default=False
            Replace an existing file; otherwise an existing ``path`` is a FileExistsError, and nothing
            is written.

        Returns
        -------
        path : pathlib.Path
        """
        path = Path(path)
        with open(path, "w" if overwrite else "x", encoding="utf-8") as stream:
            stream.write(self.html)
        return path

    def _repr_html_(self):
        # srcdoc rather than the page itself: the notebook would not run the page's script, and its style
        # would leak into the notebook. The sandbox lets it run scripts and download the class list.
        return (
            f'<iframe srcdoc="{escape(self.html, quote=True)}" title="KerDenSOM map report" '
            f'sandbox="allow-scripts allow-downloads" '
            f'style="width:100%;height:{self.height}px;border:1px solid #ddd"></iframe>'
        )

    def __repr__(self):
        return f"<MapReport: {self.nbytes / 2**20:.1f} MiB of HTML>"


def map_report(
    averager,
    images,
    *,
    summary=None,
    run_directory=None,
    title=None,
    n_nearest=None,
    n_farthest=None,
    image_size=None,
    member_size=None,
):
    """The interactive report of a fitted map.

    Parameters
    ----------
    averager : fitted ClassAverager
        Of a :class:`~sklearn_kerdensom.KerDenSOM`, or a Pipeline ending in one.
    images : array-like of shape (n_images, height, width)
        The images it was fitted on (a NumPy array, a memory map, a Dask array or an array of another
        Array API namespace, copied to the host), for the member
        galleries; read chunk by chunk (all of them once, for their distances to their code vectors,
        then the members shown).
    summary : dict, default=None
        Facts of the run to show, under the keys of ``summary.json`` of the command line
        (``"command"``, ``"parameters"``, ``"timings"`` in seconds, ...); by default those of the
        fitted map.
    run_directory : str or path-like, default=None
        The output directory of the run, as the ``kerdensom select`` command of the selection names
        it; ``RUN_DIR`` if None.
    title : str, default=None
        Heading of the page; ``"KerDenSOM map"`` if None.
    n_nearest, n_farthest : int, default=None
        Members shown of each class: those nearest to its code vector, and those farthest from it.
        None: 12, fewer on maps of more than 100 classes (see below).
    image_size : int, default=None
        Largest side of the averages and representatives in the page, in pixels: larger images are
        binned by a whole factor. None: 128, less on maps of more than 100 classes.
    member_size : int, default=None
        Largest side of the member images in the page, in pixels. None: 64, less on maps of more than
        100 classes.

    Returns
    -------
    report : MapReport

    Notes
    -----
    The defaults keep the report of a 10 x 10 map of 128 px images under 20 MB (2400 member images;
    ``benchmarks/bench_report.py``). On a map of ``n > 100`` classes they shrink so that the report
    holds about as many bytes of images: ``round(12 * 100 / n)`` members (at least 1) of each end, and
    image sides ``sqrt(100 / n)`` times smaller (at least 16 px).
    """
    # A map fitted on a GPU is reported from host copies (the page is host code).
    averager, images = on_host(averager), host_array(images)
    som = fitted_map(averager)
    check_images(averager, images)
    geometry = map_geometry(som)
    summary = {**fit_summary(averager, images), **(summary or {})}
    counts = np.asarray(averager.counts_)
    n_classes = len(counts)
    sizes = report_sizes(
        n_classes, n_nearest=n_nearest, n_farthest=n_farthest, image_size=image_size, member_size=member_size
    )
    n_nearest, n_farthest, image_size, member_size = sizes.values()
    image_shape = np.asarray(averager.averages_).shape[1:]
    # The averages as the page holds them: binned to image_size.
    factor = binning_factor(image_shape, image_size)
    averages = png_data_uris(averager.averages_, max_size=image_size)
    representatives = None
    if averager.representatives_ is not None:
        representatives = png_data_uris(averager.representatives_, max_size=image_size)
    classes = _classes(averager, som, images, counts, n_nearest, n_farthest, member_size)
    layout = tile_layout(averager.node_positions_, geometry["topology"])
    u = [item["u"] for item in classes]
    prefix = "RUN_DIR" if run_directory is None else shlex.quote(str(run_directory))
    data = {
        "classes": classes,
        "representatives": representatives,
        "image_size": [side // factor for side in image_shape],
        "select_prefix": f"kerdensom select {prefix} --classes ",
        "u_range": [min(u), max(u)],
    }
    n_empty = int(np.count_nonzero(counts == 0))
    height, width = image_shape
    subtitle = (
        f"{geometry['n_columns']} x {geometry['n_rows']} {geometry['topology']} map, {n_classes} classes "
        f"({n_empty} empty) of {int(counts.sum())} particles of {width} x {height} px"
    )
    html = page(
        title=title or "KerDenSOM map",
        subtitle=subtitle,
        geometry=geometry,
        layout=layout,
        classes=classes,
        averages=averages,
        data=data,
        run=_run(averager, summary),
    )
    return MapReport(html, height=max(700, layout["height"] + 360))


def report_sizes(n_classes, *, n_nearest=None, n_farthest=None, image_size=None, member_size=None):
    """How much of each class a report shows: the sizes given, checked, and the defaults for those that are
    None (see :func:`map_report`).

    Parameters
    ----------
    n_classes : int
        Classes of the map.
    n_nearest, n_farthest, image_size, member_size : int or None, default=None
        As in :func:`map_report`.

    Returns
    -------
    sizes : dict
        ``n_nearest``, ``n_farthest``, ``image_size``, ``member_size``, in this order.
    """
    share = min(1.0, _BUDGET_CLASSES / n_classes)
    defaults = {
        "n_nearest": max(1, round(_MEMBERS_PER_END * share)),
        "n_farthest": max(1, round(_MEMBERS_PER_END * share)),
        "image_size": max(_SMALLEST_SIDE, round(_IMAGE_SIZE * np.sqrt(share))),
        "member_size": max(_SMALLEST_SIDE, round(_MEMBER_SIZE * np.sqrt(share))),
    }
    given = {
        "n_nearest": n_nearest,
        "n_farthest": n_farthest,
        "image_size": image_size,
        "member_size": member_size,
    }
    sizes = {name: defaults[name] if value is None else value for name, value in given.items()}
    for name, value in sizes.items():
        smallest = 1 if name.endswith("size") else 0
        if isinstance(value, bool) or int(value) != value or value < smallest:
            kind = "a positive" if smallest else "a non-negative"
            raise ValueError(f"{name} must be {kind} integer; got {value!r}.")
    return {name: int(value) for name, value in sizes.items()}


def write_report(averager, images, path, *, overwrite=False, **options):
    """Write the interactive report of a fitted map (:func:`map_report`) as one self-contained HTML file.

    Parameters
    ----------
    averager : fitted ClassAverager
    images : array-like of shape (n_images, height, width)
        The images it was fitted on.
    path : str or path-like
        The file to write, e.g. ``"report.html"``.
    overwrite : bool, default=False
        Replace an existing file; otherwise an existing ``path`` is a FileExistsError, and nothing is
        written.
    **options
        Passed to :func:`map_report` (``summary``, ``run_directory``, ``n_nearest``, ...).

    Returns
    -------
    path : pathlib.Path
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(
            f"{path} already exists; nothing was written. Pass overwrite=True to replace it."
        )
    return map_report(averager, images, **options).save(path, overwrite=overwrite)


def _classes(averager, som, images, counts, n_nearest, n_farthest, member_size):
    """What the page says of each class, in map order, with the images of its member sample."""
    n_classes = len(counts)
    labels = np.asarray(averager.labels_)
    distances = member_distances(averager, images)
    sample = member_sample(distances, labels, n_classes, n_nearest, n_farthest)
    # The sampled images read in file order (one pass over a memory map), a batch at a time (bounded memory).
    shown = np.unique(np.concatenate([np.concatenate(ends) for ends in sample]).astype(np.intp))
    uris = {}
    for start in range(0, len(shown), _IMAGES_PER_BATCH):  # none when no member is shown
        batch = shown[start : start + _IMAGES_PER_BATCH]
        encoded = png_data_uris(
            np.asarray(images[batch]), max_size=member_size, clip_percent=_MEMBER_CLIP_PERCENT
        )
        uris.update(zip(batch.tolist(), encoded, strict=True))
    neighbours = neighbour_distances(som)
    u = mean_distances(neighbours)
    colours = viridis(u)
    n_columns = map_geometry(som)["n_columns"]
    total = max(int(counts.sum()), 1)
    return [
        {
            "number": node + 1,
            "row": node // n_columns,
            "column": node % n_columns,
            "count": int(counts[node]),
            "fraction": int(counts[node]) / total,
            "u": float(u[node]),
            "u_colour": colours[node],
            "neighbours": [[other + 1, distance] for other, distance in neighbours[node]],
            "members": [[[uris[index], float(distances[index])] for index in end] for end in sample[node]],
        }
        for node in range(n_classes)
    ]


def _history_plot(averager):
    """The annealing history (:func:`~sklearn_kerdensom.plotting.plot_annealing_history`) as a PNG data
    URI, or None without matplotlib."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        return None
    from ..plotting import plot_annealing_history

    # A Figure of its own, not pyplot's: no backend, no global state, nothing left open.
    figure = Figure(figsize=(9.0, 5.0), layout="constrained")
    plot_annealing_history(averager, axes=figure.subplots(2, 2))
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=72)
    return data_uri(buffer.getvalue())


def _shown(value):
    """A summary's value as a table shows it."""
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (float, np.floating)):
        return f"{value:.4g}"
    if value is None:
        return "-"
    if isinstance(value, (list, tuple)):
        # A shape reads as 32 x 32; other lists as their items.
        separator = " x " if all(isinstance(item, int) for item in value) else ", "
        return separator.join(map(str, value))
    return str(value)


def _flattened(entries, prefix=""):
    """(name, value) rows of a summary, nested entries as ``outer.inner``."""
    rows = []
    for key, value in entries.items():
        if isinstance(value, dict):
            rows.extend(_flattened(value, f"{prefix}{key}."))
        else:
            rows.append((f"{prefix}{key}", _shown(value)))
    return rows


def _run(averager, summary):
    """The run section's tables, annealing history and its plot."""
    facts = {key: value for key, value in summary.items() if key not in (*_SUMMARY_SECTIONS, *_NOT_SHOWN)}
    command = summary.get("command")
    tables = []
    if command is not None:
        tables.append(("Command", [("kerdensom", shlex.join(map(str, command)))]))
    tables += [
        ("Fit", _flattened(facts)),
        ("Parameters", _flattened(summary.get("parameters", {}))),
        ("Timings (s)", _flattened(summary.get("timings", {}))),
        ("Versions", _flattened(summary.get("versions", {}))),
    ]
    history = [
        (number, *(_shown(step[key]) for key in ("regularization", "sigma", "n_iter", "converged")))
        for number, step in enumerate(fitted_map(averager).annealing_history_, 1)
    ]
    return {"tables": tables, "history": history, "history_plot": _history_plot(averager)}
