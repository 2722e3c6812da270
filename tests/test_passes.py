"""The chunk-level passes: ties between equal code vectors, subnormal weights."""

import numpy as np
import pytest

from sklearn_kerdensom import _chunks as chunks
from sklearn_kerdensom._frame import fit_frame
from sklearn_kerdensom._passes import Statistics, flush_subnormals, nearest_nodes
from sklearn_kerdensom._samples import ChunkedSamples, chunk_terms


def samples(X, dtype, frame=None):
    return ChunkedSamples(X, frame or fit_frame(X, standardize=False), dtype, n_nodes=9)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_equal_code_vectors_are_ties_won_by_the_lowest_index(dtype):
    """A map collapsed onto one point: whatever rows share a BLAS call, every label is node 0."""
    rng = np.random.default_rng(0)
    X = rng.uniform(0, 3, size=(40, 300)).astype(dtype)
    code_vectors = np.tile(rng.uniform(0, 3, size=300), (9, 1))
    frame = fit_frame(X, standardize=False)
    labels, _ = nearest_nodes(samples(X, dtype, frame), code_vectors)
    rows = [samples(X[i : i + 1], dtype, frame) for i in range(len(X))]
    one_by_one = [nearest_nodes(row, code_vectors)[0][0] for row in rows]
    np.testing.assert_array_equal(labels, 0)
    np.testing.assert_array_equal(one_by_one, 0)


def test_distinct_code_vectors_are_not_ties():
    """The tie band is rounding-sized: a code vector nearer by 1e-4 of the squared distance wins."""
    rng = np.random.default_rng(1)
    X = rng.normal(size=(30, 400)).astype(np.float32)
    code_vectors = np.tile(X.mean(axis=0, dtype=np.float64), (4, 1))
    code_vectors[3] += 5e-5 * (X[0] - code_vectors[3])
    # The frame of all the samples (near the origin: the identity), in which the code vectors are given.
    labels, sq_distances = nearest_nodes(samples(X[:1], np.float32, fit_frame(X, False)), code_vectors)
    assert labels[0] == 3
    np.testing.assert_allclose(sq_distances[0], np.sum((X[0] - code_vectors[3]) ** 2), rtol=1e-5)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_subnormal_weights_are_flushed_without_touching_the_input(dtype):
    tiny = np.finfo(dtype).tiny
    weights = np.array([[1.0, tiny / 8, 0.0], [tiny, -tiny / 2, 0.5]], dtype=dtype)
    before = weights.copy()
    flushed = flush_subnormals(weights)
    np.testing.assert_array_equal(weights, before)
    assert flushed.dtype == dtype
    np.testing.assert_array_equal(flushed, np.array([[1.0, 0.0, 0.0], [tiny, 0.0, 0.5]], dtype=dtype))


def test_statistics_of_subnormal_weights_match_float64():
    """Flushing changes the float32 statistics by less than their rounding."""
    rng = np.random.default_rng(2)
    chunk = rng.normal(size=(50, 64)).astype(np.float32)
    weights = rng.random((50, 5)).astype(np.float32)
    weights[:, 1:] *= np.float32(1e-39)  # subnormal in float32
    terms = chunk_terms(chunk, np.zeros(64))
    statistics = Statistics.of_weights(weights, chunk, terms)
    exact = weights.astype(np.float64).T @ chunk.astype(np.float64)
    np.testing.assert_allclose(statistics.weighted_sums, exact, rtol=1e-5, atol=1e-6 * np.abs(exact).max())
    np.testing.assert_allclose(statistics.mass, weights.sum(axis=0, dtype=np.float64), rtol=1e-6, atol=1e-37)


def test_chunks_are_small_where_a_pass_copies_them():
    """Only a pass over rows already in the compute dtype, with cached terms, skips the float64 copy
    that bounds the chunk size."""
    X = np.random.default_rng(3).normal(size=(5000, 2048)).astype(np.float32)
    plain = fit_frame(X, standardize=False)
    standardized = fit_frame(X, standardize=True)
    assert not ChunkedSamples(X, plain, np.float32, 49).cache_terms()._copies_rows()
    assert ChunkedSamples(X, plain, np.float32, 49)._copies_rows()  # terms computed per chunk
    assert ChunkedSamples(X, plain, np.float64, 49).cache_terms()._copies_rows()  # float32 -> float64
    assert ChunkedSamples(X, standardized, np.float32, 49).cache_terms()._copies_rows()
    assert ChunkedSamples(X, None, np.float64, 1)._copies_rows()
    rows = [s.stop - s.start for s in ChunkedSamples(X, plain, np.float32, 49)._slices()]
    assert max(rows) * 8 * 2048 <= chunks.MAX_CHUNK_BYTES
