"""Map topology: where the nodes sit and which of them are neighbours.

Node ``c`` sits at column ``c % n_columns`` and row ``c // n_columns`` (Xmipp's
order). The smoothness operator is the graph Laplacian of the neighbour graph
divided by a fixed ``kappa`` (reference §3): 4 for a rectangular map, 6 for a
hexagonal one, 2 when the map has a single row or column. Border nodes keep the
same ``kappa``, so their smoothness pull is weaker, as in Xmipp.

The hexagonal map shifts odd rows by half a node to the right. Its diagonal
neighbours are ``(x - 1, y +- 1)`` on even rows and ``(x + 1, y +- 1)`` on odd
rows, so the neighbour relation is symmetric. Xmipp uses ``(x - 1, y +- 1)`` on
every row, which is only right for even rows and makes its operator asymmetric
(reference §3 and §13.6); we do not reproduce that.
"""

import os

import numpy as np

TOPOLOGIES = ("rect", "hex")

_RECT_OFFSETS = ((-1, 0), (1, 0), (0, -1), (0, 1))
_HEX_EVEN_ROW_OFFSETS = (*_RECT_OFFSETS, (-1, -1), (-1, 1))
_HEX_ODD_ROW_OFFSETS = (*_RECT_OFFSETS, (1, -1), (1, 1))


def node_positions(n_columns, n_rows, topology):
    """Grid coordinates of the nodes.

    Returns
    -------
    positions : ndarray of shape (n_columns * n_rows, 2)
        ``x`` (column) then ``y`` (row) of every node in map order; odd rows of a
        hexagonal map are shifted by ``+0.5`` in ``x``.
    """
    rows, columns = np.divmod(np.arange(n_columns * n_rows), n_columns)
    x = columns.astype(np.float64)
    if topology == "hex":
        x += 0.5 * (rows % 2)
    return np.column_stack([x, rows.astype(np.float64)])


def adjacency_matrix(n_columns, n_rows, topology):
    """Symmetric 0/1 neighbour matrix of shape (n_nodes, n_nodes); off-map neighbours are dropped."""
    n_nodes = n_columns * n_rows
    adjacency = np.zeros((n_nodes, n_nodes))
    for node in range(n_nodes):
        row, column = divmod(node, n_columns)
        if topology == "rect":
            offsets = _RECT_OFFSETS
        elif row % 2 == 0:
            offsets = _HEX_EVEN_ROW_OFFSETS
        else:
            offsets = _HEX_ODD_ROW_OFFSETS
        for d_column, d_row in offsets:
            other_column, other_row = column + d_column, row + d_row
            if 0 <= other_column < n_columns and 0 <= other_row < n_rows:
                adjacency[node, other_row * n_columns + other_column] = 1.0
    return adjacency


def neighbour_divisor(n_columns, n_rows, topology):
    """Xmipp's fixed ``kappa``: 2 for a map with one row or column, else 4 (rect) or 6 (hex)."""
    if n_columns == 1 or n_rows == 1:
        return 2.0
    return 4.0 if topology == "rect" else 6.0


SMOOTHNESS_KINDS = ("membrane", "bending")


def _opposite_neighbours(column, row, n_columns, n_rows, topology):
    """Pairs of map neighbours of node (column, row) on opposite sides of it, in a straight line."""
    if topology == "rect":
        pairs = (((-1, 0), (1, 0)), ((0, -1), (0, 1)))
    elif row % 2 == 0:
        pairs = (((-1, 0), (1, 0)), ((-1, -1), (0, 1)), ((0, -1), (-1, 1)))
    else:
        pairs = (((-1, 0), (1, 0)), ((0, -1), (1, 1)), ((1, -1), (0, 1)))
    for (column_a, row_a), (column_b, row_b) in pairs:
        a, b = (column + column_a, row + row_a), (column + column_b, row + row_b)
        if all(0 <= x < n_columns and 0 <= y < n_rows for x, y in (a, b)):
            yield a[1] * n_columns + a[0], b[1] * n_columns + b[0]


def bending_matrix(n_columns, n_rows, topology):
    """``D.T @ D / kappa``, ``D`` the second differences ``v_a - 2 v_c + v_b`` of every node ``c`` between
    two opposite neighbours ``a``, ``b`` (a straight line of the map: 2 directions on a rectangular map,
    3 on a hexagonal one). Its roughness is 0 for any flat, evenly stretched map."""
    rows = []
    for node in range(n_columns * n_rows):
        row, column = divmod(node, n_columns)
        for a, b in _opposite_neighbours(column, row, n_columns, n_rows, topology):
            difference = np.zeros(n_columns * n_rows)
            difference[[a, b]] = 1.0
            difference[node] = -2.0
            rows.append(difference)
    kappa = neighbour_divisor(n_columns, n_rows, topology)
    if not rows:
        return np.zeros((n_columns * n_rows, n_columns * n_rows))
    differences = np.array(rows)
    return differences.T @ differences / kappa


def smoothness_matrix(n_columns, n_rows, topology, kind="membrane"):
    """The smoothness operator ``P``: ``trace(V.T @ P @ V)`` is the map's roughness.

    ``"membrane"`` (Xmipp's): ``P = (diag(degree) - adjacency) / kappa``, the
    sum of squared differences between neighbouring code vectors divided by
    ``kappa``; it pulls every neighbour towards every other, so a strong
    penalty shrinks the whole map. ``"bending"``: :func:`bending_matrix`, the
    squared second differences along the map's lines (as in elastic maps),
    which leaves a flat, evenly stretched map free and penalises only its
    curvature. Either is symmetric and positive semi-definite, with rows
    summing to zero.

    Returns
    -------
    smoothness : ndarray of shape (n_nodes, n_nodes)
    """
    if kind == "bending":
        return bending_matrix(n_columns, n_rows, topology)
    adjacency = adjacency_matrix(n_columns, n_rows, topology)
    kappa = neighbour_divisor(n_columns, n_rows, topology)
    return (np.diag(adjacency.sum(axis=1)) - adjacency) / kappa


# A fit holds a few dense (n_nodes, n_nodes) float64 matrices at once: smoothness, system, inverse.
_NODE_MATRICES = 3


def _physical_memory():
    """Bytes of physical memory, or None where the system does not say."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def check_map_fits_in_memory(n_columns, n_rows):
    """A ValueError, before any work, for a map whose node-by-node matrices exceed physical memory
    (a 20000 x 20000 map would otherwise fail with a bare MemoryError, or swap)."""
    n_nodes = int(n_columns) * int(n_rows)
    needed = _NODE_MATRICES * 8 * n_nodes**2
    available = _physical_memory()
    if available is not None and needed > available:
        raise ValueError(
            f"a {n_columns} x {n_rows} map has {n_nodes} nodes, whose node-by-node matrices need "
            f"{needed / 2**30:.3g} GiB, more than this machine's {available / 2**30:.3g} GiB of memory; "
            "use a smaller map"
        )
