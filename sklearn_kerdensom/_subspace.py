"""Fitting in a subspace: the passes of a fit on a few principal components instead of every pixel.

Particle images at cryo-EM SNR carry their signal in far fewer dimensions than pixels. For code vectors
restricted to ``centre + span(B)`` (``B`` with orthonormal columns), a sample ``x`` with coordinates
``z = B.T (x - centre)`` and residual ``r = x - centre - B z`` is at squared distance
``|x - v|^2 = |z - w|^2 + |r|^2`` from ``v = centre + B w``: exactly, for any kernel. So a fit whose
samples are the coordinates ``z``, with each sample's squared norm increased by ``|r|^2`` and the kernel
normalised for the full number of features, is the full fit with its code vectors kept in the subspace:
same memberships, same kernel width (the residual enters it), same objective, at a fraction of the cost
per pass. The basis comes from a randomized PCA of a subsample (the signal subspace is estimated as well
from 20 000 images as from a million), the coordinates from one pass over all the samples.

Code vectors kept in the subspace are not the full fit's, though. A full M-step makes each code vector a
weighted mean of samples, residuals included, ``v_c = centre + B w_c + sum_k a_ck r_k / |r_k|``, and a
sample's own residual in it draws the sample to the nodes that hold it: ``-2 r.v_c`` holds
``-2 a_ck |r_k|`` for sample ``k``. Noise residuals of different images are nearly orthogonal (their
products are ``O(sqrt(n_features))`` against ``O(n_features)`` for their squared norms), so the fit runs on
samples that keep this term exactly and drop only those products: each sample's residual is a direction of
its own, of length ``|r_k|`` (:class:`ResidualSamples`). Its code vectors are ``(w_c, a_c)``, of
``n_components + n_samples`` coordinates; a pass costs ``n_components + 1`` products per sample and node.
On 2000 simulated particles (``benchmarks/bench_quality.py``'s path set, SNR 0.1, one seed) fits in the
subspace alone had a chance-corrected continuity of 0.60-0.64 and a topographic error of 0.056-0.077 with 32
to 256 components, where the full fit has 0.762 and 0.013; with the residual directions, 32 components give
0.760 and 0.021 (README, "Subspace fits"). A last pass over the samples puts each code vector's residual
part back in pixel space (:func:`code_vectors_in_features`).
"""

from dataclasses import dataclass, replace

import numpy as np
from sklearn.decomposition import PCA

from ._blas import map_in_threads
from ._frame import Frame
from ._passes import weighted_chunk_statistics, weighted_statistics, with_log_kernel_constant
from ._samples import ChunkedSamples, total_of

# Images the basis is estimated from, at most: enough for the signal subspace, and a bounded PCA.
_BASIS_MAX_SAMPLES = 20_000
# The basis is a function of the data alone, drawn with this seed whatever the fit's random_state: beyond
# the few signal directions a randomized PCA keeps arbitrary noise directions, and the fit is sensitive to
# them (measured on 2000 simulated particles, 32 components: adjusted Rand index 0.45-0.62 between fits
# whose bases came from different seeds, 1.0 with one basis).
_BASIS_SEED = 0


@dataclass(frozen=True)
class Subspace:
    """``centre + span(basis)`` in the internal coordinates of a fit.

    Attributes
    ----------
    centre : ndarray of shape (n_features,), float64
    basis : ndarray of shape (n_features, n_components), float64, orthonormal columns
    """

    centre: np.ndarray
    basis: np.ndarray

    @property
    def n_components(self):
        return self.basis.shape[1]

    def coordinate_rows(self, chunk, terms):
        """Coordinates and squared residual norm of one chunk, shape (n_rows, n_components + 1), float64."""
        centred = np.subtract(chunk, self.centre, dtype=np.float64)
        coordinates = centred @ self.basis
        sq_norms = np.einsum("ij,ij->i", centred, centred)
        residuals = np.maximum(sq_norms - np.einsum("ij,ij->i", coordinates, coordinates), 0.0)
        return np.column_stack([coordinates, residuals])

    def lift(self, coordinates):
        """Points of the subspace, shape (n_points, n_components), in the fit's internal coordinates."""
        return self.centre + coordinates @ self.basis.T


class ReducedSamples(ChunkedSamples):
    """The subspace coordinates of every sample, with the full dimension for the kernel's normalisation.

    Their distance terms hold ``|z|^2 + |r|^2`` as each sample's squared norm, so that every pass's
    squared distance ``|z|^2 + |r|^2 + |w|^2 - 2 z.w`` is the full-dimensional one.
    """

    def __init__(self, coordinates, sq_residuals, n_features, frame, dtype, n_nodes, n_threads=1):
        reduced_frame = Frame(
            offset=None,
            scale=None,
            exponent=0,
            centre=np.zeros(coordinates.shape[1]),
            spread=frame.spread,
        )
        coordinates = np.ascontiguousarray(coordinates, dtype=dtype)
        super().__init__(coordinates, reduced_frame, dtype, n_nodes, n_threads)
        wide = coordinates.astype(np.float64)
        sq_norms = np.einsum("ij,ij->i", wide, wide) + sq_residuals
        self.terms = np.column_stack([sq_norms, np.zeros_like(sq_norms)])
        self._n_features = n_features

    @property
    def n_features(self):
        return self._n_features


def fit_subspace(samples, n_components):
    """The principal subspace of ``n_components`` dimensions of the samples, through their mean.

    Parameters
    ----------
    samples : ChunkedSamples
        The full samples of a fit (any kind: in memory, memory-mapped, Dask).
    n_components : int
        At most the number of features; fewer samples than that give fewer components.

    Returns
    -------
    Subspace
    """
    random_state = np.random.RandomState(_BASIS_SEED)
    n_samples = samples.shape[0]
    rows = np.arange(n_samples)
    if n_samples > _BASIS_MAX_SAMPLES:
        rows = np.sort(random_state.choice(n_samples, _BASIS_MAX_SAMPLES, replace=False))
    subsample = samples.frame.to_internal(samples.take(rows), samples.dtype)
    if not subsample.flags.owndata:
        subsample = subsample.copy()
    n_components = min(n_components, *subsample.shape)
    # The subsample is this function's own array: the PCA centres it in place, without a second copy.
    pca = PCA(n_components, svd_solver="randomized", random_state=random_state, copy=False).fit(subsample)
    # A float32 PCA's components are orthonormal to ~1e-6 only: orthonormalised in float64, the residuals
    # are exact to float64 rounding.
    basis, _ = np.linalg.qr(pca.components_.T.astype(np.float64))
    return Subspace(centre=samples.frame.centre.astype(np.float64), basis=basis)


class ResidualSamples(ReducedSamples):
    """:class:`ReducedSamples` whose residuals are directions of their own (see the module docstring).

    The code vectors of a fit on them have shape ``(n_nodes, n_components + n_samples)``: the coordinates
    ``w`` in the subspace, then each sample's residual coefficient ``a[:, k]``, so that the squared
    distance of sample ``k`` is ``|z_k - w_c|^2 + |r_k|^2 - 2 a_ck |r_k| + |a_c|^2``. Every other part of
    a fit (the code-vector solve, roughness, width, extrapolation) takes them as they are.
    """

    def __init__(self, coordinates, sq_residuals, n_features, frame, dtype, n_nodes, n_threads=1):
        super().__init__(coordinates, sq_residuals, n_features, frame, dtype, n_nodes, n_threads)
        self.residual_norms = np.sqrt(sq_residuals)

    @property
    def n_components(self):
        return self.X.shape[1]

    def fit_coordinates(self, code_vectors):
        """Code vectors of the subspace (coordinates of shape (n_nodes, n_components)) as a fit on these
        samples iterates them, with residual coefficients of zero: shape (n_nodes, n_components +
        n_samples)."""
        return np.hstack([code_vectors, np.zeros((len(code_vectors), self.shape[0]))])

    def e_step(self, centers, variance, kernel, df, storage_dtype):
        """The E-step pass (:func:`._passes.e_step`) for code vectors with residual coefficients; the
        weighted sums of its statistics have their shape, ``n_components + n_samples`` columns."""
        in_subspace = centers[:, : self.n_components]
        coefficients = centers[:, self.n_components :]
        prepared = replace(
            self.prepared_centers(in_subspace), sq_norms=np.einsum("ij,ij->i", centers, centers)
        )
        weighted_sums = np.empty_like(centers)
        residual_sums = weighted_sums[:, self.n_components :]

        def chunk_result(rows):
            norms = self.residual_norms[rows]
            statistics, weights = weighted_chunk_statistics(
                self.X[rows],
                self.terms[rows],
                prepared,
                variance,
                kernel,
                df,
                storage_dtype,
                self.n_features,
                offsets=(-2.0 * norms)[:, None] * coefficients[:, rows].T,
            )
            # The chunks' columns of the residual sums are their own: the threads write apart.
            residual_sums[:, rows] = (weights * norms[:, None]).T
            return statistics

        statistics = total_of(map_in_threads(chunk_result, self._slices(), self.n_threads))
        weighted_sums[:, : self.n_components] = statistics.weighted_sums
        statistics.weighted_sums = weighted_sums
        return with_log_kernel_constant(
            statistics, self.shape[0], len(centers), variance, self.n_features, kernel, df
        )


def reduce_samples(samples, subspace, n_threads):
    """:class:`ResidualSamples` of ``samples`` in ``subspace``: one pass over the samples (for a Dask array,
    on its workers), whose result is held in memory and fitted on ``n_threads`` local threads."""
    rows = np.asarray(samples.map_rows(subspace.coordinate_rows, subspace.n_components + 1))
    return ResidualSamples(
        rows[:, :-1],
        rows[:, -1],
        samples.n_features,
        samples.frame,
        samples.dtype,
        samples.n_nodes,
        n_threads,
    )


def code_vectors_in_features(samples, subspace, reduced, code_vectors):
    """The code vectors of a fit on ``reduced`` (:class:`ResidualSamples` of ``samples``) in the samples'
    own coordinates: ``centre + B w_c + sum_k a_ck r_k / |r_k|``, the residuals from one pass.

    Returns
    -------
    ndarray of shape (n_nodes, n_features), float64, internal coordinates of ``samples``
    """
    norms = reduced.residual_norms
    coefficients = code_vectors[:, reduced.n_components :]
    # A sample inside the subspace has no residual direction, and its coefficient stays 0.
    weights = np.divide(coefficients, norms, out=np.zeros_like(coefficients), where=norms > 0).T
    statistics = weighted_statistics(samples, weights)
    weighted_residuals = statistics.weighted_sums - np.outer(statistics.mass, subspace.centre)
    weighted_residuals -= (weighted_residuals @ subspace.basis) @ subspace.basis.T
    return subspace.lift(code_vectors[:, : reduced.n_components]) + weighted_residuals
