"""Quality measures of a fitted map.

Each takes a fitted :class:`~sklearn_kerdensom.KerDenSOM`, a
:class:`~sklearn.pipeline.Pipeline` ending in one, or a fitted
:class:`~sklearn_kerdensom.ClassAverager` around either and, where it needs
them, samples ``X`` as that estimator takes them (images for a pipeline that
vectorizes them); distances are in the units the map was fitted on.
"""

import numpy as np
from sklearn.pipeline import Pipeline
from sklearn.utils.validation import check_is_fitted

from ._passes import per_sample, sq_distance_rows
from ._topology import neighbour_pairs
from .averaging import ClassAverager
from .estimator import KerDenSOM


def _fitted_map(estimator, X=None):
    """The fitted KerDenSOM inside ``estimator``, and ``X`` (if given) as that map takes it: through a
    ClassAverager's image handling and the steps of a Pipeline before the map."""
    if isinstance(estimator, ClassAverager):
        if X is not None:
            X = estimator._estimator_X(X)
        check_is_fitted(estimator)
        estimator = estimator.estimator_
    if isinstance(estimator, Pipeline):
        if X is not None:
            X = estimator[:-1].transform(X)
        estimator = estimator[-1]
    if not isinstance(estimator, KerDenSOM):
        raise TypeError(
            "the map measures need a fitted KerDenSOM, a Pipeline ending in one, or a ClassAverager "
            f"around either; got {type(estimator).__name__}."
        )
    check_is_fitted(estimator)
    return estimator, X


def _distances_to_centers(som, X):
    samples, _ = som._samples(X, "transform")
    return samples.to_numpy(per_sample(samples, som._host_centers, sq_distance_rows, som._fitted.n_nodes))


def quantization_error(som, X):
    """Mean Euclidean distance of the samples to their nearest code vector.

    Xmipp prints this after training (reference §5.6). Distances are in the
    units the map was fitted in (standardized when ``standardize=True``).

    Parameters
    ----------
    som : fitted KerDenSOM, Pipeline ending in one, or ClassAverager
    X : array-like of shape (n_samples, n_features)
        Or what the pipeline or averager takes (e.g. images).

    Returns
    -------
    error : float
    """
    som, X = _fitted_map(som, X)
    sq_distances = _distances_to_centers(som, X)
    return float(som._frame.distance_to_raw(np.mean(np.sqrt(np.min(sq_distances, axis=1)))))


def topographic_error(som, X):
    """Fraction of samples whose two nearest code vectors are not neighbours on the map.

    0 means the map preserves the topology of the data perfectly. A map of a
    single node has no second-nearest node; its error is 0.

    Parameters
    ----------
    som : fitted KerDenSOM, Pipeline ending in one, or ClassAverager
    X : array-like of shape (n_samples, n_features)
        Or what the pipeline or averager takes (e.g. images).

    Returns
    -------
    error : float in [0, 1]
    """
    som, X = _fitted_map(som, X)
    sq_distances = _distances_to_centers(som, X)  # checks X, also for a map of one node
    fitted = som._fitted
    if fitted.n_nodes < 2:
        return 0.0
    nearest_two = np.sort(np.argpartition(sq_distances, 1, axis=1)[:, :2], axis=1)
    # Pairs as single numbers, first * n_nodes + second (first < second): no (n_nodes, n_nodes) array.
    first, second = neighbour_pairs(fitted.n_columns, fitted.n_rows, fitted.topology)
    pairs = nearest_two[:, 0] * fitted.n_nodes + nearest_two[:, 1]
    neighbours = np.isin(pairs, first * fitted.n_nodes + second)
    return float(np.mean(~neighbours))


def u_matrix(som):
    """Unified distance matrix: mean distance of every code vector to its map neighbours.

    High values mark borders between groups of similar nodes. Distances are in
    the units the map was fitted in.

    Parameters
    ----------
    som : fitted KerDenSOM, Pipeline ending in one, or ClassAverager

    Returns
    -------
    u_matrix : ndarray of shape (n_rows, n_columns)
        Entry ``[row, column]`` belongs to node ``row * n_columns + column``; for
        a hexagonal map, odd rows sit half a node to the right. A node without
        neighbours (a 1 x 1 map) gets 0.
    """
    som, _ = _fitted_map(som)
    fitted = som._fitted
    centers = som._host_centers
    # Only neighbours' distances, so a 100 x 100 map needs no (n_nodes, n_nodes) array.
    first, second = neighbour_pairs(fitted.n_columns, fitted.n_rows, fitted.topology)
    distances = np.linalg.norm(centers[first] - centers[second], axis=1)
    nodes, pair_distances = np.r_[first, second], np.r_[distances, distances]
    degree = np.bincount(nodes, minlength=fitted.n_nodes)
    mean_distance = np.divide(
        np.bincount(nodes, weights=pair_distances, minlength=fitted.n_nodes),
        degree,
        out=np.zeros(fitted.n_nodes),
        where=degree > 0,
    )
    return som._frame.distance_to_raw(mean_distance).reshape(fitted.n_rows, fitted.n_columns)


def position_correlation(positions, values):
    """How well the place of each particle on the map predicts a value of it, as a correlation.

    The correlation of ``values`` with the least-squares linear function of the map position that best
    predicts them. Use it to check what a map sorts the particles by: near 1 for a coordinate laid out
    along the map (a conformational path), near 0 for a value the map ignores (the defocus, once the
    particles are CTF-corrected).

    Parameters
    ----------
    positions : array-like of shape (n_particles, 2)
        The ``(x, y)`` of each particle's node, e.g. ``averager.node_positions_[averager.labels_]`` of a
        :class:`~sklearn_kerdensom.ClassAverager`.
    values : array-like of shape (n_particles,)

    Returns
    -------
    r : float
        In [0, 1]; NaN where undefined (fewer than 3 particles, every particle in one node, or constant
        ``values``).

    Raises
    ------
    ValueError
        If the shapes do not match, or a position or value is NaN or infinite.
    """
    positions = np.asarray(positions, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    if positions.ndim != 2 or positions.shape[1] != 2 or values.shape != (len(positions),):
        raise ValueError(
            f"positions must have shape (n, 2) and values shape (n,); got {positions.shape} and "
            f"{values.shape}."
        )
    if not (np.all(np.isfinite(positions)) and np.all(np.isfinite(values))):
        raise ValueError("positions and values must be finite numbers (no NaN or infinity).")
    if len(values) < 3 or np.ptp(values) == 0:
        return float("nan")
    # A correlation does not depend on the values' scale: on a unit scale, the least squares neither
    # underflow nor overflow for values as small as 1e-300 or as large as 1e300.
    values = values / np.abs(values).max()
    values = values - values.mean()
    design = np.column_stack([positions, np.ones(len(positions))])
    coefficients, *_ = np.linalg.lstsq(design, values, rcond=None)
    fitted = design @ coefficients
    if np.ptp(fitted) == 0:
        return float("nan")
    return float(np.corrcoef(fitted, values)[0, 1])


def quantization_scorer(estimator, X, y=None):
    """Minus the :func:`quantization_error` of held-out ``X``: a scorer for model selection.

    Parameters
    ----------
    estimator : fitted KerDenSOM, Pipeline ending in one, or ClassAverager
    X : array-like
        Held-out samples, as the estimator takes them (e.g. images for a pipeline).
    y : Ignored

    Returns
    -------
    score : float
        Higher is better (``GridSearchCV(scoring=quantization_scorer)``).
    """
    return -quantization_error(estimator, X)


def topographic_scorer(estimator, X, y=None):
    """Minus the :func:`topographic_error` of held-out ``X``: a scorer for model selection.

    Parameters
    ----------
    estimator : fitted KerDenSOM, Pipeline ending in one, or ClassAverager
    X : array-like
    y : Ignored

    Returns
    -------
    score : float
        Higher is better.
    """
    return -topographic_error(estimator, X)
