"""The M-step for the code vectors: the regularised system and its two solvers.

For weights ``W`` the code vectors minimise
``sum_kc W[k, c] |x_k - v_c|^2 + lambda * trace(V.T P V)``, i.e. they solve
``(diag(mass) + lambda * P) V = W.T X`` (reference §5.3 and §9).

* :func:`gauss_seidel_sweeps` is Xmipp's solver: in-place sweeps in node order,
  at most 100, stopped when the relative L1 change of a sweep is <= 1e-5.
* :func:`solve_exactly` is a Cholesky solve of the same system: dense for small maps, and for maps of
  more than :data:`._topology.DENSE_SOLVE_MAX_NODES` nodes banded (the smoothness couples nodes at most
  two map rows apart), so that a 100 x 100 map costs time and memory in proportion to its nodes.

A node whose row of the system is empty (no mass and no regularised
neighbour, e.g. an empty node of kernel c-means) keeps its code vector; Xmipp
divides 0 by 0 there (reference §13.7).
"""

from itertools import pairwise

import numpy as np
from scipy import linalg, sparse
from scipy.sparse import linalg as sparse_linalg
from sklearn.utils import gen_batches

from ._blas import single_threaded_blas
from ._topology import DENSE_SOLVE_MAX_NODES

GAUSS_SEIDEL_TOL = 1e-5
GAUSS_SEIDEL_MAX_SWEEPS = 100

# Below this, a node's mass is treated as zero: the division would lose all precision.
_EMPTY_NODE_MASS = 1e-250


# Columns of the code vectors whose product with the smoothness is taken at once in roughness(): code
# vectors of a fit in a subspace have a column per sample (._subspace).
_ROUGHNESS_COLUMNS = 8192


def roughness(code_vectors, smoothness):
    """``trace(V.T @ P @ V)``: the smoothness penalty before its regularization weight."""
    n_columns = code_vectors.shape[1]
    with single_threaded_blas():
        return float(
            sum(
                np.einsum("ij,ij->", smoothness @ code_vectors[:, block], code_vectors[:, block])
                for block in gen_batches(n_columns, _ROUGHNESS_COLUMNS)
            )
        )


def _system(mass, weighted_sums, code_vectors, smoothness, regularization):
    """Dense system matrix and right-hand side, with empty rows made to keep their code vector."""
    matrix = np.diag(mass)
    if regularization != 0:
        matrix = matrix + regularization * smoothness.toarray()
    rhs = weighted_sums
    empty = np.diag(matrix) <= _EMPTY_NODE_MASS
    if np.any(empty):
        matrix[empty, :] = 0.0
        matrix[empty, empty] = 1.0
        rhs = weighted_sums.copy()
        rhs[empty] = code_vectors[empty]
    return matrix, rhs


def _dependency_levels(matrix):
    """Groups of nodes that a sweep in index order can update at once.

    A node depends on its lower-index neighbours' new values; its level is one
    more than theirs. Nodes of one level are never neighbours, so updating them
    together, level by level, is exactly the sequential sweep (on a rectangular
    map the levels are the anti-diagonals).
    """
    n_nodes = len(matrix)
    levels = np.zeros(n_nodes, dtype=np.intp)
    for node in range(n_nodes):
        earlier = np.flatnonzero(matrix[node, :node])
        if earlier.size:
            levels[node] = levels[earlier].max() + 1
    return [np.flatnonzero(levels == level) for level in range(levels.max() + 1)]


def gauss_seidel_sweeps(mass, weighted_sums, code_vectors, smoothness, regularization, dtype):
    """Xmipp's Gauss-Seidel code-vector update (reference §5.3).

    Each sweep updates the nodes in index order from the newest values of their
    neighbours, rounding every new code vector to ``dtype`` as Xmipp stores them
    (float32 for float32 data); the nodes of one dependency level
    are updated together, vectorised over nodes and features.

    Parameters
    ----------
    mass : ndarray of shape (n_nodes,)
    weighted_sums : ndarray of shape (n_nodes, n_features)
    code_vectors : ndarray of shape (n_nodes, n_features)
        The starting point, in internal coordinates.
    smoothness : ndarray of shape (n_nodes, n_nodes)
    regularization : float
    dtype : dtype
        Storage dtype of the code vectors.

    Returns
    -------
    code_vectors : ndarray of shape (n_nodes, n_features), float64
    n_sweeps : int
    relative_change : float
        The relative L1 change of the last sweep.
    """
    matrix, rhs = _system(mass, weighted_sums, code_vectors, smoothness, regularization)
    levels = _dependency_levels(matrix - np.diag(np.diag(matrix)))
    # Nodes sorted by level make every level a contiguous block of rows.
    order = np.concatenate(levels)
    bounds = np.cumsum([0] + [len(nodes) for nodes in levels])
    matrix = matrix[np.ix_(order, order)]
    inverse_diagonal = (1.0 / np.diag(matrix))[:, None]
    coupling = np.diag(np.diag(matrix)) - matrix
    blocks = []
    for start, stop in pairwise(bounds):
        # Only the columns of the level's neighbours take part in its update.
        columns = np.flatnonzero(np.any(coupling[start:stop] != 0, axis=0))
        span = slice(columns[0], columns[-1] + 1) if columns.size else slice(0, 0)
        blocks.append(
            (
                slice(start, stop),
                span,
                coupling[start:stop, span],
                rhs[order[start:stop]],
                inverse_diagonal[start:stop],
            )
        )
    current = np.array(code_vectors[order], dtype=np.float64)
    relative_change = np.inf
    with single_threaded_blas():
        for n_sweeps in range(1, GAUSS_SEIDEL_MAX_SWEEPS + 1):  # noqa: B007 (returned)
            previous = current.copy()
            for rows, span, level_coupling, level_rhs, inverse in blocks:
                updated = (level_rhs + level_coupling @ current[span]) * inverse
                current[rows] = updated.astype(dtype)
            change = np.abs(current - previous).sum()
            size = np.abs(current).sum()
            relative_change = change / size if size > 0 else 0.0
            if change <= GAUSS_SEIDEL_TOL * size:
                break
    current[order] = current.copy()
    return current, n_sweeps, relative_change


def solve_exactly(mass, weighted_sums, code_vectors, smoothness, regularization):
    """The exact minimiser: a Cholesky solve of the (symmetric, positive definite) system.

    Returns
    -------
    code_vectors : ndarray of shape (n_nodes, n_features), float64
    """
    if len(mass) > DENSE_SOLVE_MAX_NODES:
        return _solve_banded(mass, weighted_sums, code_vectors, smoothness, regularization)
    matrix, rhs = _system(mass, weighted_sums, code_vectors, smoothness, regularization)
    with single_threaded_blas():
        try:
            # The inverse of the (n_nodes, n_nodes) matrix times the (n_nodes, n_features) right-hand
            # side: one GEMM is ~6x faster than triangular solves with thousands of right-hand sides
            # (OpenBLAS, 7x7 map, 4096 features), and as accurate on these systems (measured within
            # 2x of the solve's error, both ~1e-15 relative, for condition numbers up to 1e6).
            inverse = linalg.cho_solve(linalg.cho_factor(matrix), np.eye(len(matrix)))
            return inverse @ rhs
        except linalg.LinAlgError:
            # Only when masses underflow so far that the matrix is numerically singular.
            return linalg.lstsq(matrix, rhs)[0]


def _solve_banded(mass, weighted_sums, code_vectors, smoothness, regularization):
    """:func:`solve_exactly` for a large map: a banded Cholesky solve, no (n_nodes, n_nodes) array.

    A node whose row is empty (no mass, no smoothness) gets a unit diagonal and keeps its code vector;
    in a positive semi-definite system such a row has no coupling either, so the system stays symmetric.
    """
    matrix = (sparse.diags_array(mass) + regularization * smoothness).tocoo()
    rhs = weighted_sums.copy()
    diagonal = matrix.diagonal()
    empty = diagonal <= _EMPTY_NODE_MASS
    if np.any(empty):
        matrix = (matrix + sparse.diags_array(empty.astype(np.float64))).tocoo()
        rhs[empty] = code_vectors[empty]
    upper = matrix.col >= matrix.row
    rows, columns, values = matrix.row[upper], matrix.col[upper], matrix.data[upper]
    bandwidth = int((columns - rows).max())
    band = np.zeros((bandwidth + 1, len(mass)))
    band[bandwidth + rows - columns, columns] = values
    with single_threaded_blas():
        try:
            return linalg.cho_solve_banded((linalg.cholesky_banded(band), False), rhs)
        except linalg.LinAlgError:
            # Only when masses underflow so far that the matrix is numerically singular.
            return np.column_stack([sparse_linalg.lsqr(matrix.tocsr(), column)[0] for column in rhs.T])
