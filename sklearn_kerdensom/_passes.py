"""What a pass computes on one chunk: distances, memberships, E-step statistics.

Every function here works on one chunk of samples, already in internal
coordinates and in the compute dtype, with its per-sample float64 distance
terms (:func:`._samples.chunk_terms`); :mod:`._samples` runs them over all the
chunks, in memory or as Dask tasks. Each chunk costs two matrix products,
``chunk @ centers.T`` for the distances and ``weights.T @ chunk`` for the
weighted sums; squared norms, the distance expansion and every accumulation
across chunks are float64, so a float32 product loses no more than its own
rounding.

The chunk functions use the Array API standard (:mod:`._array_api`): on a
GPU array a chunk, its terms and the code vectors of the pass live on the
device, and only the statistics travel back.
"""

from dataclasses import dataclass
from functools import partial

import numpy as np

from ._array_api import dtype_in, namespace, to_device, total_of_products
from ._kernels import em_weights, log_kernel_constant, log_kernel_shape


def _softmax(log_values):
    """Row-wise softmax and log normaliser (log-sum-exp) of a float64 array."""
    xp = namespace(log_values)
    largest = xp.max(log_values, axis=1, keepdims=True)
    values = xp.exp(log_values - largest)
    total = xp.sum(values, axis=1, keepdims=True)
    values /= total
    return values, xp.log(total) + largest


@dataclass(frozen=True)
class PreparedCenters:
    """Code vectors ready for the distance expansion of a pass.

    ``|x - v|^2 = |x|^2 + |v|^2 - 2 (x.(v - m) + x.m)`` with ``m`` the data centre:
    the only product in the compute dtype is ``x.(v - m)``, whose rounding is
    relative to ``|v - m|`` rather than ``|v|``. ``product_rounding`` and
    ``largest_sq_norm`` are the node-sized parts of :meth:`rounding_bound`.
    """

    shifted: np.ndarray
    sq_norms: np.ndarray
    centre: np.ndarray
    product_rounding: float
    largest_sq_norm: float

    @classmethod
    def of(cls, centers, centre, dtype):
        shifted = np.ascontiguousarray(centers - centre, dtype=dtype)
        sq_norms = np.einsum("ij,ij->i", centers, centers)
        largest_shift = np.sqrt(np.einsum("ij,ij->i", shifted, shifted, dtype=np.float64).max())
        product_rounding = np.sqrt(shifted.shape[1]) * np.finfo(shifted.dtype).eps * largest_shift
        return cls(shifted, sq_norms, centre, float(product_rounding), float(sq_norms.max()))

    def on_device(self, xp, device):
        """These code vectors as arrays of namespace ``xp`` on ``device``."""
        return PreparedCenters(
            to_device(self.shifted, xp, device),
            to_device(self.sq_norms, xp, device),
            to_device(self.centre, xp, device),
            self.product_rounding,
            self.largest_sq_norm,
        )

    @property
    def n_nodes(self):
        return self.shifted.shape[0]

    def rounding_bound(self, terms):
        """Bound on the rounding of each row's squared distances, shape (n_rows,).

        The compute-dtype product ``x.(v - m)`` rounds by about
        ``sqrt(n_features) * eps * |x| * |v - m|`` (a different BLAS kernel,
        e.g. for another number of rows, rounds differently within that), and
        the float64 expansion by ``eps64 * (|x|^2 + |v|^2)``; four times both.
        """
        row_sq_norms = terms[:, 0]
        expansion = float(np.finfo(np.float64).eps) * (row_sq_norms + self.largest_sq_norm)
        return 4.0 * (self.product_rounding * namespace(terms).sqrt(row_sq_norms) + expansion)


def squared_distances(chunk, centers, terms, offsets=None):
    """Squared Euclidean distances of shape (n_rows, n_nodes), float64 and non-negative.

    Parameters
    ----------
    chunk : ndarray of shape (n_rows, n_features)
        Samples in internal coordinates and the compute dtype.
    centers : PreparedCenters
    terms : ndarray of shape (n_rows, 2)
        The rows' :func:`chunk_terms`.
    offsets : ndarray of shape (n_rows, n_nodes), float64, default=None
        Terms of the distances that the chunk's columns do not hold (a subspace fit's residual
        coefficients, :mod:`._subspace`), added before the clipping at zero.
    """
    xp = namespace(chunk)
    sq_distances = xp.astype(chunk @ centers.shifted.T, xp.float64, copy=False)
    sq_distances *= -2.0
    sq_distances += (terms[:, 0] - 2.0 * terms[:, 1])[:, None]
    sq_distances += centers.sq_norms
    if offsets is not None:
        sq_distances += offsets
    return _clipped_at_zero(sq_distances)


def _clipped_at_zero(values):
    """``max(values, 0)``, in place for NumPy arrays (the Array API has no ``out=``)."""
    if isinstance(values, np.ndarray):
        return np.maximum(values, 0.0, out=values)
    return namespace(values).clip(values, min=0.0)


def flush_subnormals(weights):
    """A copy of ``weights`` with the values below the dtype's smallest normal number set to 0.

    Tiny memberships (``exp`` of a large negative exponent, rounded to float32)
    are subnormal numbers, and on many x86 CPUs a BLAS product with subnormal
    operands runs one to two orders of magnitude slower (measured: 80x for the
    weighted sums of a float32 pass on an Intel Xeon). Below ``finfo.tiny``
    (1.2e-38 in float32) a weight changes no sum it enters by more than the
    product's own rounding.
    """
    xp = namespace(weights)
    subnormal = xp.abs(weights) < xp.finfo(weights.dtype).smallest_normal
    if isinstance(weights, np.ndarray):
        flushed = weights.copy()
        np.copyto(flushed, 0, where=subnormal)
        return flushed
    return xp.where(subnormal, xp.zeros_like(weights), weights)


@dataclass
class Statistics:
    """Sufficient statistics of a pass, for weights ``W`` of shape (n_samples, n_nodes); they add up.

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
        pass, without its constant (0 for passes with given weights).
    """

    mass: np.ndarray
    weighted_sums: np.ndarray
    weighted_sq_norms: np.ndarray
    weighted_sq_distance: float = 0.0
    log_likelihood: float = 0.0

    @classmethod
    def of_weights(cls, weights, chunk, terms):
        """Statistics of one chunk for weights already in the compute dtype (not modified)."""
        xp = namespace(chunk)
        weights = flush_subnormals(weights)
        return cls(
            mass=xp.sum(weights, axis=0, dtype=xp.float64),
            weighted_sums=xp.astype(weights.T @ chunk, xp.float64),
            # matmul, not @: PyTorch's operator refuses a float64 vector times float32 weights.
            weighted_sq_norms=xp.matmul(terms[:, 0], weights),
        )

    def __add__(self, other):
        return Statistics(
            self.mass + other.mass,
            self.weighted_sums + other.weighted_sums,
            self.weighted_sq_norms + other.weighted_sq_norms,
            self.weighted_sq_distance + other.weighted_sq_distance,
            self.log_likelihood + other.log_likelihood,
        )

    def weighted_sq_distance_to(self, centers):
        """``sum_kc W[k, c] * |x_k - centers_c|^2`` for other code vectors, from the statistics alone."""
        cross = np.einsum("ij,ij->i", centers, self.weighted_sums)
        centre_sq = np.einsum("ij,ij->i", centers, centers)
        return float(np.sum(self.weighted_sq_norms - 2.0 * cross + self.mass * centre_sq))


def log_kernels(chunk, terms, centers, variance, kernel, df, n_features=None, offsets=None):
    """Log kernel shapes (without constant) and squared distances of one chunk.

    ``n_features``: the dimension of the samples' space, if not the chunk's (a subspace fit's);
    ``offsets``: see :func:`squared_distances`.
    """
    sq_distances = squared_distances(chunk, centers, terms, offsets)
    n_features = chunk.shape[1] if n_features is None else n_features
    return log_kernel_shape(sq_distances, variance, n_features, kernel, df), sq_distances


def weighted_chunk_statistics(
    chunk, terms, centers, variance, kernel, df, storage_dtype, n_features=None, offsets=None
):
    """E-step statistics of one chunk, and the M-step weights they were summed with.

    The memberships are the posterior probabilities of the nodes (a log-space
    softmax, so no sample underflows whatever the dimension); the M-step weights
    are :func:`._kernels.em_weights`. The weights are rounded to
    ``storage_dtype`` (Xmipp stores them in float32) and then to the chunk's
    dtype for the weighted sums, while the weighted squared distance uses them
    unrounded, as Xmipp does.

    Returns
    -------
    statistics : Statistics
    weights : ndarray of shape (n_rows, n_nodes)
        The rounded weights, in the chunk's dtype.
    """
    log_kernel, sq_distances = log_kernels(chunk, terms, centers, variance, kernel, df, n_features, offsets)
    memberships, log_normalizer = _softmax(log_kernel)
    weights = em_weights(memberships, sq_distances, variance, kernel, df)
    xp = namespace(chunk)
    rounded = xp.astype(xp.astype(weights, dtype_in(xp, storage_dtype), copy=False), chunk.dtype, copy=False)
    statistics = Statistics.of_weights(rounded, chunk, terms)
    statistics.weighted_sq_distance = total_of_products(weights, sq_distances)
    statistics.log_likelihood = float(xp.sum(log_normalizer))
    return statistics, rounded


def chunk_statistics(chunk, terms, centers, variance, kernel, df, storage_dtype, n_features=None):
    """E-step statistics of one chunk (:func:`weighted_chunk_statistics` without the weights)."""
    statistics, _ = weighted_chunk_statistics(
        chunk, terms, centers, variance, kernel, df, storage_dtype, n_features
    )
    return statistics


def with_log_kernel_constant(statistics, n_samples, n_nodes, variance, n_features, kernel, df):
    """``statistics`` of every sample with the constant of the log kernel density in their log-likelihood."""
    statistics.log_likelihood += n_samples * (
        log_kernel_constant(variance, n_features, kernel, df) - np.log(n_nodes)
    )
    return statistics


def e_step(samples, centers, variance, kernel, df, storage_dtype):
    """Memberships of every sample and the statistics the M-step needs, in one pass.

    Parameters
    ----------
    samples : ChunkedSamples
    centers : ndarray of shape (n_nodes, n_features)
        Code vectors, internal coordinates, float64.

    Returns
    -------
    statistics : Statistics
    """
    n_samples, n_features = samples.shape[0], samples.n_features
    prepared = samples.prepared_centers(centers)
    statistics = samples.reduce(
        partial(
            chunk_statistics,
            centers=prepared,
            variance=variance,
            kernel=kernel,
            df=df,
            storage_dtype=storage_dtype,
            n_features=n_features,
        )
    )
    return with_log_kernel_constant(statistics, n_samples, len(centers), variance, n_features, kernel, df)


def _given_weights_statistics(chunk, terms, weights):
    return Statistics.of_weights(namespace(chunk).asarray(weights, dtype=chunk.dtype), chunk, terms)


def weighted_statistics(samples, weights):
    """Statistics for given weights of shape (n_samples, n_nodes), e.g. initial memberships."""
    return samples.reduce(_given_weights_statistics, per_sample=weights)


def nearest_rows(chunk, terms, centers):
    """Index of the nearest code vector and the squared distance to it, shape (n_rows, 2).

    Distances within :meth:`PreparedCenters.rounding_bound` of the smallest are
    ties, and the lowest node index wins (Xmipp's rule), so that a sample's label
    does not depend on the rounding of the BLAS call it shares with other rows
    (e.g. a map collapsed onto one point by a strong regularization).
    """
    xp = namespace(chunk)
    sq_distances = squared_distances(chunk, centers, terms)
    within = xp.min(sq_distances, axis=1) + centers.rounding_bound(terms)
    # The first node within the bound: argmax of a 0/1 array (the Array API has no argmax of booleans).
    nearest = xp.argmax(xp.astype(sq_distances <= within[:, None], xp.int8), axis=1)
    nearest_sq_distances = xp.take_along_axis(sq_distances, nearest[:, None], axis=1)[:, 0]
    return xp.stack([xp.astype(nearest, xp.float64), nearest_sq_distances], axis=1)


def membership_rows(chunk, terms, centers, variance, kernel, df):
    """Memberships (posterior node probabilities) of one chunk, shape (n_rows, n_nodes)."""
    log_kernel, _ = log_kernels(chunk, terms, centers, variance, kernel, df)
    return _softmax(log_kernel)[0]


def log_density_rows(chunk, terms, centers, variance, kernel, df):
    """Log density of the equal-weight kernel mixture at the rows of one chunk, shape (n_rows,)."""
    log_kernel, _ = log_kernels(chunk, terms, centers, variance, kernel, df)
    constant = float(log_kernel_constant(variance, chunk.shape[1], kernel, df))
    return _softmax(log_kernel)[1][:, 0] + constant - float(np.log(centers.n_nodes))


def sq_distance_rows(chunk, terms, centers):
    """Squared Euclidean distances of one chunk to the code vectors, shape (n_rows, n_nodes)."""
    return squared_distances(chunk, centers, terms)


def distance_rows(chunk, terms, centers):
    """Euclidean distances of one chunk to the code vectors, shape (n_rows, n_nodes)."""
    return namespace(chunk).sqrt(squared_distances(chunk, centers, terms))


def _finite_rows(chunk, terms, rows_function, **parameters):
    """``rows_function(chunk, terms, **parameters)``; a ValueError if a row is not finite.

    The samples are finite (checked on input) and a fit refuses magnitudes whose squares overflow, but
    samples given to a fitted map may lie so far from it that their squared distances do.
    """
    # An overflow shows in the rows, which the check below turns into the error: no warnings first.
    with np.errstate(over="ignore", invalid="ignore"):
        rows = rows_function(chunk, terms, **parameters)
    xp = namespace(rows)
    if not bool(xp.all(xp.isfinite(rows))):
        raise ValueError(
            "X is too far from the fitted map: its squared distances to the code vectors overflow "
            f"(largest |x| in the fitted units: {float(xp.max(xp.abs(chunk))):.3g}); give samples on the "
            "scale of the training data."
        )
    return rows


def per_sample(samples, centers, rows_function, n_outputs=None, **parameters):
    """``rows_function(chunk, terms, prepared_centers, **parameters)`` for every sample.

    Returns a float64 array of shape (n_samples[, n_outputs]); a lazy Dask array for Dask samples.
    Raises ValueError if a sample is so far from the code vectors that its rows are not finite.
    """
    prepared = samples.prepared_centers(centers)
    return samples.map_rows(
        partial(_finite_rows, rows_function=rows_function, centers=prepared, **parameters), n_outputs
    )


def nearest_nodes(samples, centers):
    """Index of the nearest code vector of every sample and the squared distance to it (NumPy arrays)."""
    nearest = samples.to_numpy(per_sample(samples, centers, nearest_rows, 2))
    return nearest[:, 0].astype(np.intp), nearest[:, 1]
