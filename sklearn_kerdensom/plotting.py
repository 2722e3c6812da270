"""Pictures of a fitted map: classes on the map grid, the U-matrix and the annealing history.

matplotlib is an optional dependency: it is imported here only, so the rest of
the package works without it (``sklearn_kerdensom`` does not import this
module). Every function returns the matplotlib objects it drew on, so a notebook
user can restyle them, and draws into given Axes where that makes sense.

Maps are drawn as Xmipp and Scipion show the classes: node ``c`` at column
``c % n_columns`` and row ``c // n_columns``, row 0 at the top. Drawing
coordinates are in node spacings: x grows to the right, y (the row) grows
downwards. On a hexagonal map the odd rows are shifted half a node to the right
and the rows sit ``sqrt(3) / 2`` apart, so that every node is one unit away from
each of its six neighbours. Every map carries the column indices along its top,
the row indices along its left side, and the class number ``#<node + 1>``
(``rlnClassNumber`` in the STAR files) in every cell, as the interactive report
(:func:`explore`, ``report.html``) names them.
"""

import numpy as np
from sklearn.utils.validation import check_is_fitted

from ._array_api import on_host
from ._topology import TOPOLOGIES
from .metrics import _fitted_map, u_matrix

_HEX_ROW_SPACING = np.sqrt(3.0) / 2.0
# Images fill this fraction of their cell, so that neighbouring classes stay visibly apart.
_IMAGE_FILL = 0.95
# Side of one map cell in the figure, in inches, when the functions make the figure themselves.
_CELL_INCHES = 1.1
_NORMALIZATIONS = ("each", "global")
# Labels in cells: white on a dark box, readable on any image or colour.
_LABEL_STYLE = {
    "color": "white",
    "bbox": {"boxstyle": "square,pad=0.15", "facecolor": "black", "alpha": 0.55, "linewidth": 0},
}
_CLASS_MAP_KINDS = {"averages": "Class averages", "representatives": "Representatives"}


def _pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError("sklearn_kerdensom.plotting needs matplotlib: pip install matplotlib") from error
    return plt


# ---------------------------------------------------------------------------------------------------------
# Map geometry, shared by the class map and the U-matrix.


def _row_spacing(topology):
    if topology not in TOPOLOGIES:
        raise ValueError(f"topology must be one of {TOPOLOGIES}; got {topology!r}.")
    return _HEX_ROW_SPACING if topology == "hex" else 1.0


def _cell_centres(node_positions, topology):
    """Drawing coordinates of the node centres.

    Parameters
    ----------
    node_positions : array-like of shape (n_nodes, 2)
        Grid coordinates: x (column, odd rows of a hexagonal map already
        shifted by +0.5) and y (row).
    topology : {"rect", "hex"}

    Returns
    -------
    centres : ndarray of shape (n_nodes, 2)
        x and y in node spacings, y growing downwards (rows ``sqrt(3) / 2``
        apart on a hexagonal map).
    """
    positions = np.asarray(node_positions, dtype=np.float64)
    if positions.ndim != 2 or positions.shape[1] != 2 or len(positions) == 0:
        raise ValueError(f"node_positions must have shape (n_nodes, 2), n_nodes >= 1; got {positions.shape}.")
    if not np.all(np.isfinite(positions)):
        raise ValueError("node_positions must be finite (no NaN or infinity).")
    return positions * np.array([1.0, _row_spacing(topology)])


def _frame_map(ax, centres, half_width, half_height, row_spacing):
    """Fit the axes around cells of the given half sizes, row 0 at the top, in equal units; the column
    indices along the top and the row indices along the left side, without a frame."""
    ax.set_xlim(centres[:, 0].min() - half_width, centres[:, 0].max() + half_width)
    # Limits from large to small put row 0 at the top.
    ax.set_ylim(centres[:, 1].max() + half_height, centres[:, 1].min() - half_height)
    ax.set_aspect("equal")
    # Columns are numbered where the unshifted (even) rows have their nodes.
    columns = np.unique(centres[:, 0])
    columns = columns[columns == np.round(columns)]
    rows = np.unique(centres[:, 1])
    ax.set_xticks(columns, [str(round(column)) for column in columns])
    ax.set_yticks(rows, [str(round(row / row_spacing)) for row in rows])
    ax.xaxis.tick_top()
    ax.xaxis.set_label_position("top")
    ax.set_xlabel("column", fontsize="small")
    ax.set_ylabel("row", fontsize="small")
    ax.tick_params(length=0, labelsize="x-small")
    for spine in ax.spines.values():
        spine.set_visible(False)


def _map_figsize(centres, *, n_panels=1, extra_width=0.0):
    """Figure size in inches for ``n_panels`` maps side by side, plus room for titles (and a colorbar)."""
    span = np.ptp(centres, axis=0) + 1.0
    return (_CELL_INCHES * span[0] * n_panels + extra_width, _CELL_INCHES * span[1] + 0.7)


def _map_axes(ax, fig, centres, *, extra_width=0.0):
    """The Axes to draw a map on: ``ax``, else a new Axes in ``fig``, else a new figure sized to the map."""
    if ax is not None:
        return ax.figure, ax
    if fig is not None:
        return fig, fig.add_subplot()
    # Constrained: the axis labels and the title stay inside the figure.
    return _pyplot().subplots(figsize=_map_figsize(centres, extra_width=extra_width), layout="constrained")


def _kerdensom(estimator):
    """The fitted map inside a ClassAverager or a Pipeline (or the map itself)."""
    return _fitted_map(estimator)[0]


# ---------------------------------------------------------------------------------------------------------
# Class images on the map.


def _normalized(images, normalize):
    """Images scaled to [0, 1] for display, one range per image ("each") or one for all ("global")."""
    if normalize not in _NORMALIZATIONS:
        raise ValueError(f"normalize must be one of {_NORMALIZATIONS}; got {normalize!r}.")
    flat = images.reshape(len(images), -1).astype(np.float64)
    per_image = normalize == "each"
    low = flat.min(axis=1, keepdims=True) if per_image else flat.min()
    high = flat.max(axis=1, keepdims=True) if per_image else flat.max()
    span = np.broadcast_to(high - low, (len(flat), 1))
    # A constant image (an empty class's zero average) has no contrast to stretch: show it mid-grey.
    scaled = np.divide(flat - low, span, out=np.full_like(flat, 0.5), where=span > 0)
    return scaled.reshape(images.shape)


def _label_cell(ax, centre, half_side, text, corner):
    """``text`` in the ``"upper"`` or ``"lower"`` left corner of a cell, on a dark box so it reads on any
    image (row 0 is at the top: a larger y is lower)."""
    lower = corner == "lower"
    ax.text(
        centre[0] - half_side,
        centre[1] + (half_side if lower else -half_side),
        text,
        ha="left",
        va="bottom" if lower else "top",
        fontsize="x-small",
        **_LABEL_STYLE,
    )


def plot_map(
    images,
    node_positions,
    *,
    counts=None,
    topology="rect",
    cmap="gray",
    title=None,
    fig=None,
    ax=None,
    normalize="each",
):
    """Draw one image per map node at its place on the map grid.

    Parameters
    ----------
    images : array-like of shape (n_nodes, height, width)
        One image per node, in map order (class averages or representatives).
    node_positions : array-like of shape (n_nodes, 2)
        Grid coordinates of the nodes, as ``KerDenSOM.node_positions_``: x
        (column; odd rows of a hexagonal map already shifted by +0.5) and y
        (row). Row 0 is drawn at the top.
    counts : array-like of int of shape (n_nodes,), default=None
        Class sizes (images per node). When given, each cell is labelled
        ``"n=<count>"`` in its lower left corner, and empty classes are greyed.
        Every cell carries its class number ``"#<node + 1>"`` (``rlnClassNumber``
        in the STAR files) in its upper left corner.
    topology : {"rect", "hex"}, default="rect"
        Map topology; a hexagonal map has its rows ``sqrt(3) / 2`` node
        spacings apart (and its odd rows shifted, from ``node_positions``).
    cmap : str or matplotlib Colormap, default="gray"
    title : str, default=None
        Title of the Axes.
    fig : matplotlib Figure, default=None
        Figure to add the map's Axes to; a new figure sized to the map if None.
    ax : matplotlib Axes, default=None
        Axes to draw into (takes precedence over ``fig``).
    normalize : {"each", "global"}, default="each"
        Contrast: each image stretched over its own min .. max, or all images
        on one common scale (to compare intensities between classes).

    Returns
    -------
    fig : matplotlib Figure
    ax : matplotlib Axes
        One ``AxesImage`` per node, in map order (``ax.images``); each image's
        extent is a square of side 0.95 (rect) or 0.95 sqrt(3) / 2 (hex) node
        spacings around its node.
    """
    images = np.asarray(images)
    centres = _cell_centres(node_positions, topology)
    if images.ndim != 3 or len(images) != len(centres):
        raise ValueError(
            f"images must have shape (n_nodes, height, width) with n_nodes = {len(centres)}; "
            f"got {images.shape}."
        )
    if counts is not None:
        counts = np.asarray(counts)
        if counts.shape != (len(centres),):
            raise ValueError(f"counts must have shape ({len(centres)},); got {counts.shape}.")
        numbers = np.issubdtype(counts.dtype, np.number) and np.all(np.isfinite(counts))
        if not (numbers and np.all(counts >= 0)):
            raise ValueError("counts must be numbers of particles: finite and >= 0.")
    fig, ax = _map_axes(ax, fig, centres)
    # On a hexagonal map the cell height is the row spacing: wider images would overlap the next row.
    half_side = 0.5 * _IMAGE_FILL * _row_spacing(topology)
    for node, (image, centre) in enumerate(zip(_normalized(images, normalize), centres, strict=True)):
        empty = counts is not None and counts[node] == 0
        x, y = centre
        ax.imshow(
            image,
            cmap=cmap,
            vmin=0.0,
            vmax=1.0,
            extent=(x - half_side, x + half_side, y + half_side, y - half_side),
            # Large images in small tiles are low-pass filtered as they are shrunk, instead of aliasing.
            interpolation="antialiased",
            # Greyed, not hidden: an empty node's code vector still shows what the map interpolates there.
            alpha=0.3 if empty else None,
        )
        # The class number written to the STAR files (rlnClassNumber: the node, counted from 1).
        _label_cell(ax, centre, half_side, f"#{node + 1}", "upper")
        if counts is not None:
            _label_cell(ax, centre, half_side, f"n={int(counts[node])}", "lower")
    _frame_map(ax, centres, 0.5, 0.5 * _row_spacing(topology), _row_spacing(topology))
    if title is not None:
        ax.set_title(title)
    return fig, ax


def plot_class_map(averager, *, kind="averages", fig=None, **kwargs):
    """Draw the classes of a fitted :class:`~sklearn_kerdensom.ClassAverager` on the map grid.

    Parameters
    ----------
    averager : fitted ClassAverager
        Its estimator must be a KerDenSOM (or a Pipeline ending in one), which
        gives the node positions and the topology.
    kind : {"averages", "representatives", "both"}, default="averages"
        Class averages (mean of the member images), representatives (the code
        vectors as images), or both side by side.
    fig : matplotlib Figure, default=None
        Figure to draw the panels in; a new one if None.
    **kwargs
        Passed to :func:`plot_map` (``cmap``, ``normalize``, ``title``, ...).
        With ``kind="both"``, ``title`` becomes the figure's title.

    Returns
    -------
    fig : matplotlib Figure
    axes : ndarray of matplotlib Axes of shape (n_panels,)
        One Axes per panel (1, or 2 for ``"both"``), in the order averages,
        representatives.
    """
    check_is_fitted(averager, "averages_")
    averager = on_host(averager)  # a map fitted on a GPU is drawn from host copies
    if not hasattr(averager, "node_positions_"):
        raise ValueError("plot_class_map needs a map: the averager's clusterer has no node_positions_.")
    if kind not in (*_CLASS_MAP_KINDS, "both"):
        raise ValueError(f"kind must be one of {(*_CLASS_MAP_KINDS, 'both')}; got {kind!r}.")
    kinds = list(_CLASS_MAP_KINDS) if kind == "both" else [kind]
    if "representatives" in kinds and averager.representatives_ is None:
        raise ValueError(
            "This averager has no representatives_ (its pipeline cannot invert the code vectors)."
        )
    topology = _kerdensom(averager)._fitted.topology
    if fig is None:
        figsize = _map_figsize(_cell_centres(averager.node_positions_, topology), n_panels=len(kinds))
        fig = _pyplot().figure(figsize=figsize, layout="constrained")
    axes = np.array(fig.subplots(1, len(kinds), squeeze=False)[0])
    title = kwargs.pop("title", None) if len(kinds) > 1 else kwargs.get("title")
    for ax, name in zip(axes, kinds, strict=True):
        plot_map(
            getattr(averager, f"{name}_"),
            averager.node_positions_,
            counts=averager.counts_,
            topology=topology,
            ax=ax,
            **{"title": _CLASS_MAP_KINDS[name], **kwargs},
        )
    if len(kinds) > 1 and title is not None:
        fig.suptitle(title)
    return fig, axes


# ---------------------------------------------------------------------------------------------------------
# U-matrix.


def _cell_outline(topology):
    """Vertices of one map cell around its centre, in node spacings.

    A unit square on a rectangular map; on a hexagonal one a pointy-top hexagon
    of width 1, which tiles the plane with rows ``sqrt(3) / 2`` apart.
    """
    if _row_spacing(topology) == 1.0:
        return 0.5 * np.array([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]])
    angles = np.deg2rad(30.0 + 60.0 * np.arange(6))
    return np.column_stack([np.cos(angles), np.sin(angles)]) / np.sqrt(3.0)


def plot_node_values(
    values, node_positions, *, topology="rect", ax=None, cmap="viridis", label=None, class_numbers=True
):
    """Draw one value per map node as a heat map of map cells, with a colorbar.

    Parameters
    ----------
    values : array-like of shape (n_nodes,)
        A value per node in map order; NaN cells (e.g. empty classes) are left blank.
    node_positions : array-like of shape (n_nodes, 2)
        As ``KerDenSOM.node_positions_``.
    topology : {"rect", "hex"}, default="rect"
    ax : matplotlib Axes, default=None
        Axes to draw into; a new figure sized to the map if None.
    cmap : str or matplotlib Colormap, default="viridis"
    label : str, default=None
        Colorbar label.
    class_numbers : bool, default=True
        Write the class number ``"#<node + 1>"`` (``rlnClassNumber`` in the STAR files) at the centre
        of every cell.

    Returns
    -------
    fig : matplotlib Figure
    ax : matplotlib Axes
        Its first collection is a ``PolyCollection`` of one cell per node
        (squares, or hexagons on a hexagonal map), in map order;
        ``collection.colorbar`` is its colorbar. The class numbers are its
        texts, in map order.
    """
    from matplotlib.collections import PolyCollection

    centres = _cell_centres(node_positions, topology)
    values = np.asarray(values, dtype=float)
    if values.shape != (len(centres),):
        raise ValueError(f"values must have shape (n_nodes,) = ({len(centres)},); got {values.shape}.")
    outline = _cell_outline(topology)
    fig, ax = _map_axes(ax, None, centres, extra_width=1.0)
    cells = PolyCollection(
        centres[:, None, :] + outline,
        array=np.ma.masked_invalid(values),
        cmap=cmap,
        edgecolors="white",
        linewidths=0.5,
    )
    ax.add_collection(cells)
    _frame_map(ax, centres, outline[:, 0].max(), outline[:, 1].max(), _row_spacing(topology))
    if class_numbers:
        for node, centre in enumerate(centres):
            ax.text(*centre, f"#{node + 1}", ha="center", va="center", fontsize="x-small", **_LABEL_STYLE)
    fig.colorbar(cells, ax=ax, label=label)
    return fig, ax


def plot_u_matrix(som, *, ax=None, cmap="viridis"):
    """Draw the U-matrix of a fitted map as a heat map of its cells, with a colorbar.

    High values (mean distance of a code vector to its map neighbours) mark
    borders between groups of similar classes.

    Parameters
    ----------
    som : fitted KerDenSOM
        Or a Pipeline ending in one, or a fitted ClassAverager around either.
    ax : matplotlib Axes, default=None
        Axes to draw into; a new figure sized to the map if None.
    cmap : str or matplotlib Colormap, default="viridis"

    Returns
    -------
    fig : matplotlib Figure
    ax : matplotlib Axes
        As :func:`plot_node_values`, with the values of
        :func:`~sklearn_kerdensom.metrics.u_matrix` in the units the map was
        fitted in.
    """
    som = on_host(_kerdensom(som))
    fig, ax = plot_node_values(
        u_matrix(som).ravel(),
        som.node_positions_,
        topology=som._fitted.topology,
        ax=ax,
        cmap=cmap,
        label="mean distance to neighbours",
    )
    ax.set_title("U-matrix")
    return fig, ax


# ---------------------------------------------------------------------------------------------------------
# Annealing history.


def _plot_per_step(ax, steps, values, ylabel):
    ax.plot(steps, values, "o-")
    ax.set_xticks(steps)
    ax.set_xlabel("annealing step")
    ax.set_ylabel(ylabel)


def _plot_objective_trace(ax, traces):
    """Objective at every iteration of all steps in sequence, a dashed line where a step begins."""
    lengths = [len(trace) for trace in traces]
    objective = np.concatenate(traces)
    ax.plot(np.arange(1, len(objective) + 1), objective, "-", linewidth=1.0)
    for boundary in np.cumsum(lengths)[:-1]:
        ax.axvline(boundary + 0.5, color="0.6", linestyle="--", linewidth=0.8)
    ax.set_xlabel("iteration (all steps)")
    ax.set_ylabel("penalized negative log-likelihood")


def plot_annealing_history(som, *, axes=None):
    """Draw how a map's fit went through the annealing schedule.

    Four panels: the smoothness regularization of each step (log scale when
    it is positive throughout), the kernel width ``sigma`` at the end of each
    step, the inner iterations of each step (bars; steps that stopped at
    ``max_iter`` without converging in orange), and the objective at every
    iteration, steps concatenated, with dashed lines at the step boundaries.

    Parameters
    ----------
    som : fitted KerDenSOM
        Or a Pipeline ending in one, or a fitted ClassAverager around either.
    axes : array-like of 4 matplotlib Axes, default=None
        Axes to draw the panels into, in the order above; a new 2 x 2 figure
        if None.

    Returns
    -------
    fig : matplotlib Figure
    axes : ndarray of matplotlib Axes of shape (4,)
        Regularization, sigma, iterations, objective.
    """
    som = _kerdensom(som)
    check_is_fitted(som, "annealing_history_")
    history = som.annealing_history_
    if axes is None:
        fig, axes = _pyplot().subplots(2, 2, figsize=(9.0, 6.0), layout="constrained")
    axes = np.ravel(axes)
    if axes.size != 4:
        raise ValueError(f"axes must hold 4 Axes; got {axes.size}.")
    fig = axes[0].figure
    steps = np.arange(1, len(history) + 1)
    regularization = np.array([step["regularization"] for step in history], dtype=np.float64)
    _plot_per_step(axes[0], steps, regularization, "regularization")
    # Zero regularization (kernel c-means) has no place on a log scale.
    if np.all(regularization > 0):
        axes[0].set_yscale("log")
    _plot_per_step(axes[1], steps, [step["sigma"] for step in history], "sigma (end of step)")
    converged = np.array([bool(step["converged"]) for step in history])
    axes[2].bar(steps, [step["n_iter"] for step in history], color=np.where(converged, "C0", "C1"))
    axes[2].set_xticks(steps)
    axes[2].set_xlabel("annealing step")
    axes[2].set_ylabel("iterations")
    _plot_objective_trace(axes[3], [np.ravel(step["objective_per_iteration"]) for step in history])
    return fig, axes


# ---------------------------------------------------------------------------------------------------------
# The interactive report.


def explore(averager, images, **kwargs):
    """The interactive report of a fitted map, which a notebook displays inline.

    The map of class averages on its topology, switchable to the representatives and the U-matrix; a
    class's size and distances to its neighbours on hover; its members (nearest to and farthest from its
    code vector) on click; classes picked by shift-click turned into the ``kerdensom select`` command
    that writes their particles; the run's parameters and annealing history. See
    :mod:`sklearn_kerdensom.report`.

    Parameters
    ----------
    averager : fitted ClassAverager
        Of a KerDenSOM, or a Pipeline ending in one.
    images : array-like of shape (n_images, height, width)
        The images it was fitted on.
    **kwargs
        Passed to :func:`sklearn_kerdensom.report.map_report` (``n_nearest``, ``n_farthest``,
        ``member_size``, ``run_directory``, ...).

    Returns
    -------
    report : sklearn_kerdensom.report.MapReport
        Shown inline by Jupyter (in a frame of its own, so that its script runs); ``report.save(path)``
        writes it as a self-contained HTML file.

    Examples
    --------
    In a notebook, the last expression of a cell::

        explore(averager, images)
    """
    from .report import map_report

    return map_report(averager, images, **kwargs)
