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
from scipy import sparse

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


def neighbour_pairs(n_columns, n_rows, topology):
    """Every pair of map neighbours once, as two index arrays ``first < second``; off-map neighbours are
    dropped."""
    pairs = []
    for node in range(n_columns * n_rows):
        row, column = divmod(node, n_columns)
        if topology == "rect":
            offsets = _RECT_OFFSETS
        elif row % 2 == 0:
            offsets = _HEX_EVEN_ROW_OFFSETS
        else:
            offsets = _HEX_ODD_ROW_OFFSETS
        for d_column, d_row in offsets:
            other_column, other_row = column + d_column, row + d_row
            other = other_row * n_columns + other_column
            if 0 <= other_column < n_columns and 0 <= other_row < n_rows and node < other:
                pairs.append((node, other))
    first, second = np.array(pairs, dtype=np.intp).reshape(-1, 2).T
    return first, second


def adjacency_matrix(n_columns, n_rows, topology):
    """Symmetric 0/1 neighbour matrix of shape (n_nodes, n_nodes), dense (for the measures of a map)."""
    n_nodes = n_columns * n_rows
    adjacency = np.zeros((n_nodes, n_nodes))
    first, second = neighbour_pairs(n_columns, n_rows, topology)
    adjacency[first, second] = adjacency[second, first] = 1.0
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
    3 on a hexagonal one). Its roughness is 0 for any flat, evenly stretched map. Sparse (CSR).

    A map of one row or column is a chain whatever its topology (a hexagonal column zig-zags, so it has
    no straight line of three nodes): its second differences are along the chain.
    """
    if n_columns == 1 or n_rows == 1:
        topology = "rect"
    entries = []
    for node in range(n_columns * n_rows):
        row, column = divmod(node, n_columns)
        for a, b in _opposite_neighbours(column, row, n_columns, n_rows, topology):
            entries.append((a, node, b))
    n_nodes = n_columns * n_rows
    if not entries:
        return sparse.csr_array((n_nodes, n_nodes))
    triples = np.array(entries, dtype=np.intp)
    lines = np.repeat(np.arange(len(triples)), 3)
    weights = np.tile([1.0, -2.0, 1.0], len(triples))
    differences = sparse.csr_array((weights, (lines, triples.ravel())), shape=(len(triples), n_nodes))
    return (differences.T @ differences / neighbour_divisor(n_columns, n_rows, topology)).tocsr()


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
    smoothness : scipy.sparse.csr_array of shape (n_nodes, n_nodes)
        Sparse, so that a 100 x 100 map holds a few entries per node rather than 10^8.
    """
    if kind == "bending":
        return bending_matrix(n_columns, n_rows, topology)
    n_nodes = n_columns * n_rows
    first, second = neighbour_pairs(n_columns, n_rows, topology)
    adjacency = sparse.csr_array(
        (np.ones(2 * len(first)), (np.r_[first, second], np.r_[second, first])), shape=(n_nodes, n_nodes)
    )
    degree = sparse.diags_array(adjacency.sum(axis=1))
    return ((degree - adjacency) / neighbour_divisor(n_columns, n_rows, topology)).tocsr()


# A fit holds a few node-sized float64 matrices at once: smoothness, system, its factor or inverse.
_NODE_MATRICES = 3
# Maps of more nodes than this solve their code-vector system as a band (see _code_vectors.py).
DENSE_SOLVE_MAX_NODES = 400


def half_bandwidth(n_columns, n_rows):
    """Largest ``|a - b|`` of two nodes that a smoothness kind couples (second differences reach two
    rows away in map order)."""
    return min(2 * n_columns + 1, n_columns * n_rows - 1)


def _physical_memory():
    """Bytes of physical memory, or None where the system does not say."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def check_map_fits_in_memory(n_columns, n_rows, dense=True):
    """A ValueError, before any work, for a map whose node-by-node matrices exceed physical memory
    (a 20000 x 20000 map would otherwise fail with a bare MemoryError, or swap).

    ``dense``: whether the fit holds dense (n_nodes, n_nodes) matrices (Xmipp's Gauss-Seidel sweeps);
    otherwise a large map's are bands of :func:`half_bandwidth`.
    """
    n_nodes = int(n_columns) * int(n_rows)
    width = n_nodes if dense or n_nodes <= DENSE_SOLVE_MAX_NODES else half_bandwidth(n_columns, n_rows) + 1
    needed = _NODE_MATRICES * 8 * n_nodes * width
    available = _physical_memory()
    if available is not None and needed > available:
        raise ValueError(
            f"a {n_columns} x {n_rows} map has {n_nodes} nodes, whose node-by-node matrices need "
            f"{needed / 2**30:.3g} GiB, more than this machine's {available / 2**30:.3g} GiB of memory; "
            "use a smaller map"
        )
