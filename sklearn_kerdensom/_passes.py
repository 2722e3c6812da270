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
from scipy.special import logsumexp

from ._chunks import sample_chunks
from ._kernels import em_weights, log_kernel_constant, log_kernel_shape


def internal_chunks(X, frame, dtype, n_nodes):
    """Yield ``(rows, chunk)``: a slice of samples and those samples in internal coordinates."""
    n_samples, n_features = X.shape
    for rows in sample_chunks(n_samples, n_features, n_nodes):
        yield rows, frame.to_internal(X[rows], dtype)


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


def squared_distances(chunk, centers):
    """Squared Euclidean distances of shape (n_rows, n_nodes), float64 and non-negative.

    Parameters
    ----------
    chunk : ndarray of shape (n_rows, n_features)
        Samples in internal coordinates and the compute dtype.
    centers : PreparedCenters

    Returns
    -------
    sq_distances : ndarray of shape (n_rows, n_nodes)
    sample_sq_norms : ndarray of shape (n_rows,)
        The rows' float64 squared norms.
    """
    sample_sq_norms = np.einsum("ij,ij->i", chunk, chunk, dtype=np.float64)
    sample_dot_centre = np.einsum("ij,j->i", chunk, centers.centre, dtype=np.float64)
    cross = (chunk @ centers.shifted.T).astype(np.float64)
    cross += sample_dot_centre[:, None]
    sq_distances = sample_sq_norms[:, None] + centers.sq_norms[None, :]
    sq_distances -= 2.0 * cross
    np.maximum(sq_distances, 0.0, out=sq_distances)
    return sq_distances, sample_sq_norms


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


def log_kernels(chunk, centers, variance, kernel, df):
    """Log kernel shapes (without constant), squared distances and squared norms of one chunk."""
    sq_distances, sample_sq_norms = squared_distances(chunk, centers)
    log_kernel = log_kernel_shape(sq_distances, variance, chunk.shape[1], kernel, df)
    return log_kernel, sq_distances, sample_sq_norms


def e_step(X, frame, centers, variance, kernel, df, dtype, storage_dtype):
    """Memberships of every sample and the statistics the M-step needs, in one pass.

    The memberships are the posterior probabilities of the nodes (a log-space
    softmax, so no sample underflows whatever the dimension); the M-step weights
    are :func:`._kernels.em_weights`. The weights are rounded to
    ``storage_dtype`` (Xmipp stores them in float32) and then to the compute
    ``dtype`` for the weighted sums, while the weighted squared distance uses
    them unrounded, as Xmipp does.

    Returns
    -------
    statistics : Statistics
    """
    n_samples, n_features = X.shape
    n_nodes = centers.shape[0]
    prepared = PreparedCenters.of(centers, frame.centre, dtype)
    statistics = Statistics.zeros(n_nodes, n_features)
    for _, chunk in internal_chunks(X, frame, dtype, n_nodes):
        log_kernel, sq_distances, sample_sq_norms = log_kernels(chunk, prepared, variance, kernel, df)
        log_normalizer = logsumexp(log_kernel, axis=1, keepdims=True)
        memberships = np.exp(log_kernel - log_normalizer)
        weights = em_weights(memberships, sq_distances, variance, kernel, df)
        statistics.weighted_sq_distance += float(np.sum(weights * sq_distances))
        statistics.log_likelihood += float(np.sum(log_normalizer))
        rounded = weights.astype(storage_dtype).astype(dtype, copy=False)
        statistics.add_weighted(rounded, chunk, sample_sq_norms)
    statistics.log_likelihood += n_samples * (
        log_kernel_constant(variance, n_features, kernel, df) - np.log(n_nodes)
    )
    return statistics


def weighted_statistics(X, frame, weights, dtype):
    """Statistics for given weights of shape (n_samples, n_nodes), e.g. initial memberships."""
    n_features = X.shape[1]
    n_nodes = weights.shape[1]
    statistics = Statistics.zeros(n_nodes, n_features)
    for rows, chunk in internal_chunks(X, frame, dtype, n_nodes):
        sample_sq_norms = np.einsum("ij,ij->i", chunk, chunk, dtype=np.float64)
        statistics.add_weighted(np.asarray(weights[rows], dtype=dtype), chunk, sample_sq_norms)
    return statistics


def nearest_nodes(X, frame, centers, dtype):
    """Index of the nearest code vector of every sample and the squared distance to it."""
    n_samples = X.shape[0]
    prepared = PreparedCenters.of(centers, frame.centre, dtype)
    labels = np.empty(n_samples, dtype=np.intp)
    min_sq_distances = np.empty(n_samples)
    for rows, chunk in internal_chunks(X, frame, dtype, prepared.n_nodes):
        sq_distances, _ = squared_distances(chunk, prepared)
        labels[rows] = np.argmin(sq_distances, axis=1)
        min_sq_distances[rows] = np.take_along_axis(sq_distances, labels[rows, None], axis=1)[:, 0]
    return labels, min_sq_distances


def per_sample(X, frame, centers, dtype, compute_rows, n_outputs=None):
    """Run ``compute_rows(chunk, prepared_centers)`` over chunks and stack the results.

    ``n_outputs`` is the number of columns of the result (``None`` for a vector).
    """
    n_samples = X.shape[0]
    prepared = PreparedCenters.of(centers, frame.centre, dtype)
    shape = (n_samples,) if n_outputs is None else (n_samples, n_outputs)
    result = np.empty(shape)
    for rows, chunk in internal_chunks(X, frame, dtype, prepared.n_nodes):
        result[rows] = compute_rows(chunk, prepared)
    return result


def membership_rows(chunk, centers, variance, kernel, df):
    """Memberships (posterior node probabilities) of one chunk, shape (n_rows, n_nodes)."""
    log_kernel, _, _ = log_kernels(chunk, centers, variance, kernel, df)
    return np.exp(log_kernel - logsumexp(log_kernel, axis=1, keepdims=True))


def log_density_rows(chunk, centers, variance, kernel, df):
    """Log density of the equal-weight kernel mixture at the rows of one chunk, shape (n_rows,)."""
    log_kernel, _, _ = log_kernels(chunk, centers, variance, kernel, df)
    constant = log_kernel_constant(variance, chunk.shape[1], kernel, df)
    return logsumexp(log_kernel, axis=1) + constant - np.log(centers.n_nodes)


def distance_rows(chunk, centers):
    """Euclidean distances of one chunk to the code vectors, shape (n_rows, n_nodes)."""
    return np.sqrt(squared_distances(chunk, centers)[0])
