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
"""

from dataclasses import dataclass

import numpy as np
from sklearn.decomposition import PCA

from ._frame import Frame
from ._samples import ChunkedSamples

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


def reduce_samples(samples, subspace, n_threads):
    """:class:`ReducedSamples` of ``samples`` in ``subspace``: one pass over the samples (for a Dask array,
    on its workers), whose result is held in memory and fitted on ``n_threads`` local threads."""
    rows = np.asarray(samples.map_rows(subspace.coordinate_rows, subspace.n_components + 1))
    return ReducedSamples(
        rows[:, :-1],
        rows[:, -1],
        samples.n_features,
        samples.frame,
        samples.dtype,
        samples.n_nodes,
        n_threads,
    )
