"""The report's HTML: the map laid out on its topology, the panels, the run's facts, and the data of the
script, in one page that needs nothing but itself.

The layout is :func:`~sklearn_kerdensom.plotting.plot_map`'s: node ``c`` at column ``c % n_columns`` and
row ``c // n_columns``, row 0 at the top; on a hexagonal map the odd rows are shifted half a node to the
right and the rows are ``sqrt(3) / 2`` node spacings apart, and a tile is a square of 0.95 row spacings.
"""

import json
from html import escape

import numpy as np

from ._script import SCRIPT
from ._style import STYLE

_HEX_ROW_SPACING = np.sqrt(3.0) / 2.0
_TILE_FILL = 0.95
# Node spacing on screen, in CSS pixels: the map spans about _MAP_WIDTH, within these bounds.
_MAP_WIDTH = 880
_PITCH_RANGE = (56, 112)
_AXIS_MARGIN = 22
# matplotlib's viridis at nine even steps, for the U-matrix (no matplotlib needed to draw it).
_VIRIDIS = ("#440154", "#472d7b", "#3b528b", "#2c728e", "#21918c", "#28ae80", "#5ec962", "#addc30", "#fde725")


def viridis(values):
    """Colours of values on the viridis scale from their minimum to their maximum, as ``#rrggbb``.

    Parameters
    ----------
    values : array-like of shape (n_values,)

    Returns
    -------
    colours : list of str
        Mid-scale where all values are equal.
    """
    values = np.asarray(values, dtype=np.float64)
    span = np.ptp(values) if values.size else 0.0
    positions = (values - values.min()) / span if span > 0 else np.full(values.shape, 0.5)
    anchors = np.array([[int(colour[i : i + 2], 16) for i in (1, 3, 5)] for colour in _VIRIDIS], dtype=float)
    steps = np.linspace(0.0, 1.0, len(anchors))
    rgb = np.column_stack([np.interp(positions, steps, anchors[:, channel]) for channel in range(3)])
    return ["#{:02x}{:02x}{:02x}".format(*channels) for channels in np.rint(rgb).astype(int)]


def tile_layout(node_positions, topology):
    """Where the tiles of a map go on the page.

    Parameters
    ----------
    node_positions : array-like of shape (n_nodes, 2)
        As ``KerDenSOM.node_positions_`` (x, with odd hexagonal rows shifted by 0.5, and y, the row).
    topology : {"rect", "hex"}

    Returns
    -------
    layout : dict
        ``pitch``: node spacing in CSS pixels; ``width``, ``height``: the map's size in CSS pixels;
        ``side``: a tile's side; ``centres``: (n_nodes, 2) tile centres relative to the map's top left
        corner; ``row_spacing``: rows apart, in node spacings.
    """
    positions = np.asarray(node_positions, dtype=np.float64)
    row_spacing = _HEX_ROW_SPACING if topology == "hex" else 1.0
    span = np.ptp(positions, axis=0) + 1.0
    pitch = int(np.clip(round(_MAP_WIDTH / span[0]), *_PITCH_RANGE))
    origin = positions.min(axis=0)
    centres = (positions - origin + 0.5) * pitch * np.array([1.0, row_spacing])
    return {
        "pitch": pitch,
        "width": round(span[0] * pitch),
        "height": round(span[1] * pitch * row_spacing),
        "side": _TILE_FILL * pitch * row_spacing,
        "centres": centres,
        "row_spacing": row_spacing,
    }


def _px(value):
    return f"{value:.1f}px"


def _tile(node, count, centre, side, average):
    empty = " empty" if count == 0 else ""
    number = node + 1
    left, top = centre - side / 2
    return (
        f'<button type="button" class="tile{empty}" data-node="{node}" data-class="{number}" '
        f'data-count="{count}" aria-pressed="false" aria-label="class {number}, {count} particles" '
        f'style="left:{_px(left)};top:{_px(top)};width:{_px(side)};height:{_px(side)}">'
        f'<img alt="" src="{average}"><span class="number">#{number}</span>'
        f'<span class="size">n={count}</span></button>'
    )


def _axes(layout, geometry):
    """Column indices above the map and row indices left of it, as map.png's axes number them."""
    pitch, row_spacing = layout["pitch"], layout["row_spacing"]
    columns = "".join(
        f'<span style="left:{_px((column + 0.5) * pitch)};top:50%">{column}</span>'
        for column in range(geometry["n_columns"])
    )
    rows = "".join(
        f'<span style="left:50%;top:{_px((row + 0.5) * pitch * row_spacing)}">{row}</span>'
        for row in range(geometry["n_rows"])
    )
    return (
        f'<div class="axis-corner" style="width:{_AXIS_MARGIN}px;height:{_AXIS_MARGIN}px"></div>'
        f'<div class="axis" id="column-axis" title="column" style="height:{_AXIS_MARGIN}px;'
        f'width:{layout["width"]}px">{columns}</div>'
        f'<div class="axis" id="row-axis" title="row" style="width:{_AXIS_MARGIN}px;'
        f'height:{layout["height"]}px">{rows}</div>'
    )


def _view_switch(has_representatives):
    views = [("averages", "Averages", True), ("representatives", "Representatives", has_representatives)]
    views.append(("u-matrix", "U-matrix", True))
    labels = "".join(
        f'<label class="view"><input type="radio" name="view" value="{value}"'
        f"{' checked' if value == 'averages' else ''}{'' if enabled else ' disabled'}>{text}</label>"
        for value, text, enabled in views
    )
    return f'<fieldset id="views"><legend>Show</legend>{labels}</fieldset>'


def _table(rows, headers=None):
    head = "".join(f"<th>{escape(str(cell))}</th>" for cell in headers) if headers else ""
    body = "".join(
        "<tr>"
        + (f"<th>{escape(str(row[0]))}</th>" if not headers else f"<td>{escape(str(row[0]))}</td>")
        + "".join(f"<td>{escape(str(cell))}</td>" for cell in row[1:])
        + "</tr>"
        for row in rows
    )
    return f"<table>{f'<tr>{head}</tr>' if head else ''}{body}</table>"


def _run_section(run):
    tables = [f"<div><h3>{escape(name)}</h3>{_table(rows)}</div>" for name, rows in run["tables"] if rows]
    history = ""
    if run["history"]:
        history = "<h3>Annealing history</h3>" + _table(
            run["history"], ["step", "regularization", "sigma", "iterations", "converged"]
        )
    plot = f'<img alt="annealing history" src="{run["history_plot"]}">' if run["history_plot"] else ""
    return (
        '<section id="run"><h2>Run</h2>'
        f'<div class="tables">{"".join(tables)}<div>{history}</div></div>{plot}</section>'
    )


def _script_data(data):
    """``data`` as JSON that may sit inside a ``<script>`` element: no ``</script>`` or ``<!--`` in it."""
    return json.dumps(data, separators=(",", ":"), allow_nan=False).replace("<", "\\u003c")


def page(*, title, subtitle, geometry, layout, classes, averages, data, run):
    """The report's HTML.

    Parameters
    ----------
    title, subtitle : str
    geometry : dict
        ``n_columns``, ``n_rows``, ``topology``.
    layout : dict
        As :func:`tile_layout`.
    classes : list of dict
        One per node, in map order, with ``count``.
    averages : list of str
        Data URIs of the class averages, in map order: the tiles' images.
    data : dict
        What the script reads (``#report-data``); with ``representatives`` (None when there are none)
        and ``u_range``.
    run : dict
        ``tables`` (list of (title, rows)), ``history`` (rows), ``history_plot`` (a data URI or None).

    Returns
    -------
    html : str
    """
    tiles = "".join(
        _tile(node, item["count"], centre, layout["side"], average)
        for node, (item, centre, average) in enumerate(zip(classes, layout["centres"], averages, strict=True))
    )
    low, high = data["u_range"]
    legend = (
        f'<div id="u-legend" hidden><span>{low:.3g}</span><span class="bar" style="background:'
        f'linear-gradient(to right, {", ".join(_VIRIDIS)})"></span><span>{high:.3g}</span>'
        "<span>mean distance to neighbours (high: a border between groups of classes)</span></div>"
    )
    map_frame = (
        f'<div class="map-frame">{_axes(layout, geometry)}'
        f'<div id="map" data-view="averages" data-pitch="{layout["pitch"]}" '
        f'data-topology="{geometry["topology"]}" '
        f'style="width:{layout["width"]}px;height:{layout["height"]}px">'
        f"{tiles}</div></div>"
    )
    selection = (
        '<section id="selection"><h2>Selection</h2>'
        '<p><code id="class-list">none</code> · <span id="selected-particles">0</span> particles</p>'
        '<label>subset file <input id="subset-out" value="subset.star" spellcheck="false"></label>'
        '<pre id="select-command"></pre><div class="buttons">'
        '<button type="button" class="action" id="copy-command">Copy command</button>'
        '<a class="action" id="download-classes" download="selected_classes.txt" href="data:,">'
        "Download class list</a>"
        '<button type="button" class="action" id="clear-selection">Clear</button></div>'
        '<p class="muted">Shift-click (or Ctrl-click) a class to select it, or tick "click selects". '
        "Run the command where you ran kerdensom.</p></section>"
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        # No favicon request: the page fetches nothing, not even from disk.
        f'<link rel="icon" href="data:,"><title>{escape(title)}</title><style>{STYLE}</style></head>'
        f'<body><header><h1>{escape(title)}</h1><p class="muted">{escape(subtitle)}</p></header>'
        '<div class="layout"><section id="map-panel"><div class="toolbar">'
        f"{_view_switch(data['representatives'] is not None)}"
        '<label><input type="checkbox" id="select-mode"> click selects</label>'
        '<span class="muted">hover: class, size, distances · click: its particles</span></div>'
        f"{map_frame}{legend}</section>"
        f'<aside>{selection}<section id="detail" hidden></section></aside></div>'
        f"{_run_section(run)}"
        '<div id="tooltip" role="tooltip" hidden></div>'
        f'<script type="application/json" id="report-data">{_script_data(data)}</script>'
        f"<script>{SCRIPT}</script></body></html>\n"
    )
