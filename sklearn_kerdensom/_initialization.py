"""Initial code vectors and kernel width (reference §5.0)."""

import numpy as np
from sklearn.decomposition import PCA

from ._kernels import sigma_from_kernel_variance
from ._passes import nearest_nodes, weighted_statistics
from ._topology import node_positions

# PCA on a subsample is plenty to place the initial map and bounds its memory.
_PCA_MAX_SAMPLES = 1000


def random_memberships(n_samples, n_nodes, random_state):
    """Xmipp's random start: uniform random numbers, each row normalised to 1."""
    memberships = random_state.uniform(size=(n_samples, n_nodes))
    return memberships / memberships.sum(axis=1, keepdims=True)


def from_memberships(samples, memberships, storage_dtype):
    """Code vectors and width from initial memberships (Xmipp's ``updateV1`` and ``updateSigmaI``).

    The code vectors are the membership-weighted means (a node without weight
    sits at the data mean); the width is ``sum(U * d2) / (n_samples * n_features)``.
    For Xmipp's Gaussian rule this width lacks the ``1 / n_features`` of its
    memberships, so the first iteration uses a far too wide kernel: we keep
    that, it is part of Xmipp's trajectory. The code vectors are rounded to
    ``storage_dtype`` as Xmipp stores them.

    Returns
    -------
    code_vectors : ndarray of shape (n_nodes, n_features), float64, internal coordinates
    sigma : float
    """
    n_samples, n_features = samples.shape[0], samples.n_features
    statistics = weighted_statistics(samples, memberships)
    empty = statistics.mass <= 0
    safe_mass = np.where(empty, 1.0, statistics.mass)
    code_vectors = statistics.weighted_sums / safe_mass[:, None]
    code_vectors[empty] = samples.frame.centre
    code_vectors = code_vectors.astype(storage_dtype).astype(np.float64)
    sigma = statistics.weighted_sq_distance_to(code_vectors) / (n_samples * n_features)
    return code_vectors, max(sigma, 0.0)


def pca_code_vectors(samples, n_columns, n_rows, topology, random_state):
    """Code vectors on a grid in the plane of the first two principal components.

    The longer side of the map follows the first component. Along each
    component the nodes are spread uniformly over ``+- sqrt(3)`` standard
    deviations, so that their spread equals the data's.

    Returns
    -------
    code_vectors : ndarray of shape (n_nodes, n_features), float64, internal coordinates
    """
    n_samples, n_features = samples.shape
    sample = np.arange(n_samples)
    if n_samples > _PCA_MAX_SAMPLES:
        sample = np.sort(random_state.choice(n_samples, _PCA_MAX_SAMPLES, replace=False))
    internal = samples.frame.to_internal(samples.take(sample), samples.dtype)
    positions = node_positions(n_columns, n_rows, topology)
    if n_rows > n_columns:
        positions = positions[:, ::-1]
    extent = np.ptp(positions, axis=0)
    grid = np.zeros_like(positions)
    spread = extent > 0
    grid[:, spread] = (positions[:, spread] - positions[:, spread].mean(axis=0)) / (0.5 * extent[spread])
    code_vectors = np.tile(internal.mean(axis=0, dtype=np.float64), (len(positions), 1))
    n_components = min(2, len(sample) - 1, n_features)
    if n_components < 1 or not np.any(np.ptp(internal, axis=0)):
        # One distinct sample: no direction to spread the map along.
        return code_vectors
    # The subsample is a private copy (taken by fancy indexing): PCA may centre it in place.
    pca = PCA(n_components=n_components, copy=False, random_state=random_state).fit(internal)
    for axis in range(n_components):
        std = np.sqrt(max(pca.explained_variance_[axis], 0.0))
        code_vectors += np.outer(grid[:, axis] * np.sqrt(3.0) * std, pca.components_[axis])
    return code_vectors


def width_from_nearest(samples, code_vectors, kernel, objective):
    """Width whose kernel variance is the mean squared distance to the nearest code vector per feature."""
    n_samples, n_features = samples.shape[0], samples.n_features
    _, min_sq_distances = nearest_nodes(samples, code_vectors)
    variance = float(np.sum(min_sq_distances)) / (n_samples * n_features)
    return sigma_from_kernel_variance(variance, n_features, kernel, objective)
