import numpy as np
import pytest

from sklearn_kerdensom._topology import (
    adjacency_matrix,
    neighbour_divisor,
    node_positions,
    smoothness_matrix,
)


def test_node_order_is_xmipps():
    positions = node_positions(4, 3, "rect")
    # node c at column c % n_columns, row c // n_columns
    np.testing.assert_array_equal(positions[6], [2, 1])
    np.testing.assert_array_equal(positions[:, 0], np.tile(np.arange(4), 3))
    np.testing.assert_array_equal(positions[:, 1], np.repeat(np.arange(3), 4))


def test_hex_positions_shift_odd_rows():
    positions = node_positions(3, 2, "hex")
    np.testing.assert_array_equal(positions[:, 0], [0, 1, 2, 0.5, 1.5, 2.5])


def test_rect_neighbours():
    adjacency = adjacency_matrix(3, 3, "rect")
    assert set(np.flatnonzero(adjacency[4])) == {1, 3, 5, 7}
    assert set(np.flatnonzero(adjacency[0])) == {1, 3}
    np.testing.assert_array_equal(adjacency, adjacency.T)


@pytest.mark.parametrize("n_columns, n_rows", [(4, 4), (5, 3), (3, 6)])
def test_hex_neighbours_follow_row_parity_and_are_symmetric(n_columns, n_rows):
    adjacency = adjacency_matrix(n_columns, n_rows, "hex")
    np.testing.assert_array_equal(adjacency, adjacency.T)
    positions = node_positions(n_columns, n_rows, "hex")
    # In the shifted-row geometry (row spacing sqrt(3)/2) every neighbour is at
    # distance 1, and every node at distance 1 is a neighbour.
    geometry = positions * [1.0, np.sqrt(3) / 2]
    distances = np.linalg.norm(geometry[:, None] - geometry[None], axis=-1)
    np.testing.assert_array_equal(adjacency > 0, np.isclose(distances, 1.0))


def test_hex_interior_node_has_six_neighbours():
    adjacency = adjacency_matrix(5, 5, "hex")
    # node (2, 1): odd row, diagonal neighbours at x and x + 1
    node = 1 * 5 + 2
    assert set(np.flatnonzero(adjacency[node])) == {1 * 5 + 1, 1 * 5 + 3, 2, 3, 2 * 5 + 2, 2 * 5 + 3}
    node = 2 * 5 + 2  # even row: diagonal neighbours at x - 1 and x
    assert set(np.flatnonzero(adjacency[node])) == {11, 13, 6, 7, 16, 17}


@pytest.mark.parametrize(
    "n_columns, n_rows, topology, kappa",
    [(7, 7, "rect", 4), (7, 7, "hex", 6), (1, 6, "rect", 2), (6, 1, "hex", 2), (1, 1, "rect", 2)],
)
def test_smoothness_matrix(n_columns, n_rows, topology, kappa):
    assert neighbour_divisor(n_columns, n_rows, topology) == kappa
    smoothness = smoothness_matrix(n_columns, n_rows, topology).toarray()
    np.testing.assert_allclose(smoothness.sum(axis=1), 0.0, atol=1e-12)
    np.testing.assert_array_equal(smoothness, smoothness.T)
    assert np.linalg.eigvalsh(smoothness).min() > -1e-12
    # trace(V.T P V) is the sum over edges of squared differences, over kappa
    rng = np.random.default_rng(0)
    code_vectors = rng.normal(size=(n_columns * n_rows, 3))
    adjacency = adjacency_matrix(n_columns, n_rows, topology)
    edges = np.argwhere(np.triu(adjacency))
    expected = sum(np.sum((code_vectors[a] - code_vectors[b]) ** 2) for a, b in edges) / kappa
    np.testing.assert_allclose(np.trace(code_vectors.T @ smoothness @ code_vectors), expected)


@pytest.mark.parametrize("topology", ["rect", "hex"])
@pytest.mark.parametrize("n_columns, n_rows", [(5, 4), (7, 7), (6, 1)])
def test_bending_leaves_flat_maps_free_and_penalises_curvature(n_columns, n_rows, topology):
    from sklearn_kerdensom._topology import smoothness_matrix

    bending = smoothness_matrix(n_columns, n_rows, topology, "bending").toarray()
    membrane = smoothness_matrix(n_columns, n_rows, topology).toarray()
    flat = node_positions(n_columns, n_rows, topology) @ np.array([[2.0, -1.0, 0.5], [0.3, 1.0, 4.0]])
    assert np.allclose(bending, bending.T) and np.linalg.eigvalsh(bending).min() > -1e-12
    assert np.einsum("ij,ij->", bending @ flat, flat) == pytest.approx(0.0, abs=1e-9)
    assert np.einsum("ij,ij->", membrane @ flat, flat) > 1.0  # the membrane pulls a flat map together
    curved = (node_positions(n_columns, n_rows, topology) ** 2).sum(axis=1, keepdims=True)
    assert np.einsum("ij,ij->", bending @ curved, curved) > 1.0


def test_bending_spreads_a_map_over_a_plane():
    """On samples spread evenly over a square, a strong membrane penalty shrinks the map onto its corners;
    the bending penalty leaves it stretched over the square, every node in use."""
    from sklearn_kerdensom import KerDenSOM

    rng = np.random.default_rng(0)
    X = np.column_stack([rng.uniform(-1, 1, size=(2000, 2)), rng.normal(scale=0.05, size=(2000, 3))])
    interior = np.array([1 <= c % 5 <= 3 and 1 <= c // 5 <= 3 for c in range(25)])
    counts = {}
    for smoothness in ("membrane", "bending"):
        som = KerDenSOM(5, 5, smoothness=smoothness, random_state=0, reg_initial=5000, reg_final=1000).fit(X)
        counts[smoothness] = np.bincount(som.labels_, minlength=25)
    assert np.all(counts["bending"] > 0.5 * len(X) / 25)
    assert np.all(counts["membrane"][interior] == 0)


@pytest.mark.parametrize("topology", ["rect", "hex"])
@pytest.mark.parametrize("kind", ["membrane", "bending"])
@pytest.mark.parametrize("regularization", [0.0, 30.0])
def test_a_large_map_solves_its_band_as_the_dense_system(topology, kind, regularization):
    from sklearn_kerdensom import _code_vectors

    n_columns, n_rows = 21, 20  # past DENSE_SOLVE_MAX_NODES
    smoothness = smoothness_matrix(n_columns, n_rows, topology, kind)
    rng = np.random.default_rng(0)
    n_nodes = n_columns * n_rows
    mass = rng.uniform(0, 20, n_nodes)
    mass[::9] = 0.0  # empty nodes: without regularization they keep their code vectors
    weighted_sums, code_vectors = rng.normal(size=(2, n_nodes, 6))
    banded = _code_vectors.solve_exactly(mass, weighted_sums, code_vectors, smoothness, regularization)
    matrix, rhs = _code_vectors._system(mass, weighted_sums, code_vectors, smoothness, regularization)
    np.testing.assert_allclose(banded, np.linalg.solve(matrix, rhs), rtol=1e-9, atol=1e-12)


def test_a_100_x_100_map_fits_without_node_by_node_arrays():
    import tracemalloc

    from sklearn.exceptions import ConvergenceWarning

    from sklearn_kerdensom import KerDenSOM

    X = np.random.default_rng(0).normal(size=(300, 8))
    tracemalloc.start()
    try:
        with pytest.warns(ConvergenceWarning):  # 2 iterations a step: only the memory matters here
            som = KerDenSOM(100, 100, annealing_steps=2, max_iter=2, random_state=0).fit(X)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert som.cluster_centers_.shape == (10_000, 8)
    # One dense (10 000, 10 000) float64 array alone would take 800 MB.
    assert peak < 100 * 2**20


@pytest.mark.parametrize("n_columns, n_rows", [(1, 6), (6, 1)])
def test_bending_of_a_one_line_hexagonal_map_is_that_of_the_chain(n_columns, n_rows):
    # A hexagonal column zig-zags: without falling back to the chain it would have no smoothness at all.
    hexagonal = smoothness_matrix(n_columns, n_rows, "hex", "bending").toarray()
    chain = smoothness_matrix(n_columns, n_rows, "rect", "bending").toarray()
    np.testing.assert_array_equal(hexagonal, chain)
    assert np.abs(hexagonal).sum() > 0
