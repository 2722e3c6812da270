"""Passes over the samples, chunk by chunk: distances, memberships, E-step statistics.

Every pass reads the data in chunks of rows (:mod:`._chunks`), maps each chunk to
the internal frame in the compute dtype (float32 stays float32), and does its
work with two matrix products per chunk: ``chunk @ centers.T`` for the
distances and ``weights.T @ chunk`` for the weighted sums. Squared norms, the
distance expansion and every accumulation across chunks are float64, so a
float32 product loses no more than its own rounding.
"""

from dataclasses import dataclass

import numpy as np

from ._chunks import sample_chunks
from ._kernels import em_weights, log_kernel_constant, log_kernel_shape


def chunk_terms(chunk, centre):
    """Per-sample float64 terms of the distance expansion: ``|x|^2`` and ``x.m``, shape (n_rows, 2)."""
    wide = chunk.astype(np.float64, copy=False)
    return np.column_stack([np.einsum("ij,ij->i", wide, wide), wide @ centre])


def internal_chunks(X, frame, dtype, n_nodes, sample_terms=None):
    """Yield ``(rows, chunk, terms)``: a slice of samples, those samples in internal coordinates and
    their :func:`chunk_terms` (taken from ``sample_terms`` of shape (n_samples, 2) when given)."""
    n_samples, n_features = X.shape
    for rows in sample_chunks(n_samples, n_features, n_nodes):
        chunk = frame.to_internal(X[rows], dtype)
        terms = chunk_terms(chunk, frame.centre) if sample_terms is None else sample_terms[rows]
        yield rows, chunk, terms


def precomputed_sample_terms(X, frame, dtype):
    """:func:`chunk_terms` of every sample, shape (n_samples, 2): computed once per fit, they spare
    every iteration two float64 passes over the data."""
    terms = np.empty((X.shape[0], 2))
    for rows, _, chunk_terms_ in internal_chunks(X, frame, dtype, 1):
        terms[rows] = chunk_terms_
    return terms


def _softmax(log_values):
    """Row-wise softmax and log normaliser (log-sum-exp) of a float64 array."""
    largest = log_values.max(axis=1, keepdims=True)
    values = np.exp(log_values - largest)
    total = values.sum(axis=1, keepdims=True)
    values /= total
    return values, np.log(total) + largest


@dataclass(frozen=True)
class PreparedCenters:
    """Code vectors ready for the distance expansion of a pass.

    ``|x - v|^2 = |x|^2 + |v|^2 - 2 (x.(v - m) + x.m)`` with ``m`` the data centre:
    the only product in the compute dtype is ``x.(v - m)``, whose rounding is
    relative to ``|v - m|`` rather than ``|v|``.
    """

    shifted: np.ndarray
    sq_norms: np.ndarray
    centre: np.ndarray

    @classmethod
    def of(cls, centers, centre, dtype):
        shifted = np.ascontiguousarray(centers - centre, dtype=dtype)
        sq_norms = np.einsum("ij,ij->i", centers, centers)
        return cls(shifted, sq_norms, centre)

    @property
    def n_nodes(self):
        return self.shifted.shape[0]


def squared_distances(chunk, centers, terms):
    """Squared Euclidean distances of shape (n_rows, n_nodes), float64 and non-negative.

    Parameters
    ----------
    chunk : ndarray of shape (n_rows, n_features)
        Samples in internal coordinates and the compute dtype.
    centers : PreparedCenters
    terms : ndarray of shape (n_rows, 2)
        The rows' :func:`chunk_terms`.
    """
    cross = (chunk @ centers.shifted.T).astype(np.float64)
    cross += terms[:, 1:2]
    sq_distances = terms[:, 0:1] + centers.sq_norms[None, :]
    sq_distances -= 2.0 * cross
    np.maximum(sq_distances, 0.0, out=sq_distances)
    return sq_distances


@dataclass
class Statistics:
    """Sufficient statistics of one pass, for weights ``W`` of shape (n_samples, n_nodes).

    Attributes
    ----------
    mass : ndarray of shape (n_nodes,)
        ``sum_k W[k, c]``.
    weighted_sums : ndarray of shape (n_nodes, n_features)
        ``W.T @ X`` in internal coordinates.
    weighted_sq_norms : ndarray of shape (n_nodes,)
        ``sum_k W[k, c] * |x_k|^2``.
    weighted_sq_distance : float
        ``sum_kc W[k, c] * |x_k - v_c|^2`` for the code vectors of the pass.
    log_likelihood : float
        Sum over samples of the log kernel density at the code vectors of the
        pass (0 for passes with given weights).
    """

    mass: np.ndarray
    weighted_sums: np.ndarray
    weighted_sq_norms: np.ndarray
    weighted_sq_distance: float = 0.0
    log_likelihood: float = 0.0

    @classmethod
    def zeros(cls, n_nodes, n_features):
        return cls(np.zeros(n_nodes), np.zeros((n_nodes, n_features)), np.zeros(n_nodes))

    def add_weighted(self, weights, chunk, sample_sq_norms):
        """Accumulate the weights of one chunk (already in the compute dtype)."""
        self.mass += weights.sum(axis=0, dtype=np.float64)
        self.weighted_sums += weights.T @ chunk
        self.weighted_sq_norms += sample_sq_norms @ weights

    def weighted_sq_distance_to(self, centers):
        """``sum_kc W[k, c] * |x_k - centers_c|^2`` for other code vectors, from the statistics alone."""
        cross = np.einsum("ij,ij->i", centers, self.weighted_sums)
        centre_sq = np.einsum("ij,ij->i", centers, centers)
        return float(np.sum(self.weighted_sq_norms - 2.0 * cross + self.mass * centre_sq))


def log_kernels(chunk, terms, centers, variance, kernel, df):
    """Log kernel shapes (without constant) and squared distances of one chunk."""
    sq_distances = squared_distances(chunk, centers, terms)
    return log_kernel_shape(sq_distances, variance, chunk.shape[1], kernel, df), sq_distances


def e_step(X, frame, centers, variance, kernel, df, dtype, storage_dtype, sample_terms=None):
    """Memberships of every sample and the statistics the M-step needs, in one pass.

    The memberships are the posterior probabilities of the nodes (a log-space
    softmax, so no sample underflows whatever the dimension); the M-step weights
    are :func:`._kernels.em_weights`. The weights are rounded to
    ``storage_dtype`` (Xmipp stores them in float32) and then to the compute
    ``dtype`` for the weighted sums, while the weighted squared distance uses
    them unrounded, as Xmipp does. ``sample_terms`` are
    :func:`precomputed_sample_terms`, if available.

    Returns
    -------
    statistics : Statistics
    """
    n_samples, n_features = X.shape
    n_nodes = centers.shape[0]
    prepared = PreparedCenters.of(centers, frame.centre, dtype)
    statistics = Statistics.zeros(n_nodes, n_features)
    for _, chunk, terms in internal_chunks(X, frame, dtype, n_nodes, sample_terms):
        log_kernel, sq_distances = log_kernels(chunk, terms, prepared, variance, kernel, df)
        memberships, log_normalizer = _softmax(log_kernel)
        weights = em_weights(memberships, sq_distances, variance, kernel, df)
        statistics.weighted_sq_distance += float(np.einsum("ij,ij->", weights, sq_distances))
        statistics.log_likelihood += float(np.sum(log_normalizer))
        rounded = weights.astype(storage_dtype).astype(dtype, copy=False)
        statistics.add_weighted(rounded, chunk, terms[:, 0])
    statistics.log_likelihood += n_samples * (
        log_kernel_constant(variance, n_features, kernel, df) - np.log(n_nodes)
    )
    return statistics


def weighted_statistics(X, frame, weights, dtype):
    """Statistics for given weights of shape (n_samples, n_nodes), e.g. initial memberships."""
    n_features = X.shape[1]
    n_nodes = weights.shape[1]
    statistics = Statistics.zeros(n_nodes, n_features)
    for rows, chunk, terms in internal_chunks(X, frame, dtype, n_nodes):
        statistics.add_weighted(np.asarray(weights[rows], dtype=dtype), chunk, terms[:, 0])
    return statistics


def per_sample(X, frame, centers, dtype, compute_rows, n_outputs=None):
    """Run ``compute_rows(chunk, terms, prepared_centers)`` over chunks and stack the results.

    ``n_outputs`` is the number of columns of the result (``None`` for a vector).
    """
    n_samples = X.shape[0]
    prepared = PreparedCenters.of(centers, frame.centre, dtype)
    shape = (n_samples,) if n_outputs is None else (n_samples, n_outputs)
    result = np.empty(shape)
    for rows, chunk, terms in internal_chunks(X, frame, dtype, prepared.n_nodes):
        result[rows] = compute_rows(chunk, terms, prepared)
    return result


def nearest_rows(chunk, terms, centers):
    """Index of the nearest code vector and the squared distance to it, shape (n_rows, 2)."""
    sq_distances = squared_distances(chunk, centers, terms)
    nearest = np.argmin(sq_distances, axis=1)
    return np.column_stack([nearest, sq_distances[np.arange(len(nearest)), nearest]])


def nearest_nodes(X, frame, centers, dtype):
    """Index of the nearest code vector of every sample, and the squared distance to it."""
    nearest = per_sample(X, frame, centers, dtype, nearest_rows, 2)
    return nearest[:, 0].astype(np.intp), nearest[:, 1]


def membership_rows(chunk, terms, centers, variance, kernel, df):
    """Memberships (posterior node probabilities) of one chunk, shape (n_rows, n_nodes)."""
    log_kernel, _ = log_kernels(chunk, terms, centers, variance, kernel, df)
    return _softmax(log_kernel)[0]


def log_density_rows(chunk, terms, centers, variance, kernel, df):
    """Log density of the equal-weight kernel mixture at the rows of one chunk, shape (n_rows,)."""
    log_kernel, _ = log_kernels(chunk, terms, centers, variance, kernel, df)
    constant = log_kernel_constant(variance, chunk.shape[1], kernel, df)
    return _softmax(log_kernel)[1][:, 0] + constant - np.log(centers.n_nodes)


def sq_distance_rows(chunk, terms, centers):
    """Squared Euclidean distances of one chunk to the code vectors, shape (n_rows, n_nodes)."""
    return squared_distances(chunk, centers, terms)


def distance_rows(chunk, terms, centers):
    """Euclidean distances of one chunk to the code vectors, shape (n_rows, n_nodes)."""
    return np.sqrt(squared_distances(chunk, centers, terms))
