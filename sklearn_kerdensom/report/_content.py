"""What a report shows of a fitted map: its classes, a sample of their members, the distances between
neighbouring classes, and the facts of the run.

Class numbers are those of the STAR files (``rlnClassNumber``): node ``c`` is class ``c + 1``, at
column ``c % n_columns`` and row ``c // n_columns``.
"""

import numpy as np
from sklearn.pipeline import Pipeline
from sklearn.utils.validation import check_is_fitted

from .._chunks import sample_chunks
from .._topology import neighbour_pairs
from ..averaging import _estimator_input


def fitted_map(averager):
    """The fitted KerDenSOM at the end of a fitted :class:`~sklearn_kerdensom.ClassAverager`.

    Raises
    ------
    ValueError
        If the averager's clusterer is not a map (it has no ``node_positions_``).
    """
    check_is_fitted(averager, "averages_")
    estimator = averager.estimator_
    som = estimator[-1] if isinstance(estimator, Pipeline) else estimator
    if not hasattr(som, "node_positions_") or not hasattr(averager, "node_positions_"):
        raise ValueError("a map report needs a map: the averager's clusterer has no node_positions_.")
    return som


def check_images(averager, images):
    """A ValueError unless ``images`` are as many, and of the shape, as those ``averager`` was fitted on."""
    shape = getattr(images, "shape", None)
    expected = (len(averager.labels_), *averager.averages_.shape[1:])
    if shape is None or tuple(shape) != expected:
        raise ValueError(
            f"images must be the {expected[0]} images of shape {expected[1:]} the averager was fitted on; "
            f"got shape {shape}."
        )


def member_distances(averager, images):
    """Distance of every image to the code vector of its class, where the map measures distances.

    The images pass through the fitted estimator chunk by chunk (:meth:`KerDenSOM.transform`, after the
    pipeline's steps), so memory-mapped and Dask images are read once, without being held in memory.

    Parameters
    ----------
    averager : fitted ClassAverager
    images : array-like of shape (n_images, height, width)
        The images it was fitted on.

    Returns
    -------
    distances : ndarray of shape (n_images,), float64
        In the units the map was fitted in (standardized ones with ``standardize=True``).
    """
    labels = np.asarray(averager.labels_)
    n_classes = len(averager.averages_)
    distances = np.empty(len(labels))
    for rows in sample_chunks(len(labels), int(np.prod(images.shape[1:])), n_classes):
        chunk = np.asarray(images[rows])
        to_codes = np.asarray(averager.estimator_.transform(_estimator_input(averager.estimator_, chunk)))
        distances[rows] = to_codes[np.arange(len(chunk)), labels[rows]]
    return distances


def member_sample(distances, labels, n_classes, n_nearest, n_farthest):
    """The members of every class that a gallery shows: the nearest and the farthest from its code vector.

    Typical members are the nearest; junk, outliers and misfits are the farthest.

    Parameters
    ----------
    distances : array-like of shape (n_images,)
        As :func:`member_distances`.
    labels : array-like of int of shape (n_images,)
    n_classes : int
    n_nearest, n_farthest : int
        Members shown of each end. A class of at most ``n_nearest + n_farthest`` members is shown whole.

    Returns
    -------
    sample : list of (nearest, farthest) of length n_classes
        Indices of images, each array in increasing distance. ``farthest`` is empty when the class is
        shown whole in ``nearest``; otherwise the two are disjoint.
    """
    distances = np.asarray(distances)
    labels = np.asarray(labels)
    # Sorted by class, then by distance within the class.
    order = np.lexsort((distances, labels))
    counts = np.bincount(labels, minlength=n_classes)
    sample = []
    for end, count in zip(np.cumsum(counts), counts, strict=True):
        members = order[end - count : end]
        if count <= n_nearest + n_farthest:
            sample.append((members, members[:0]))
        else:
            sample.append((members[:n_nearest], members[count - n_farthest :]))
    return sample


def neighbour_distances(som):
    """The distance between the code vectors of every two neighbouring nodes of a fitted map.

    Parameters
    ----------
    som : fitted KerDenSOM

    Returns
    -------
    neighbours : list of list of (int, float), one list per node
        ``(neighbour node, distance)`` in increasing node order, distances in the units the map was
        fitted in, as :func:`~sklearn_kerdensom.metrics.u_matrix` measures them.
    """
    fitted = som._fitted
    first, second = neighbour_pairs(fitted.n_columns, fitted.n_rows, fitted.topology)
    centers = som._host_centers
    # Pair by pair, a block at a time: memory and work grow with the pairs, not the square of the nodes.
    distances = np.empty(len(first))
    # range, not gen_batches: a 1 x 1 map has no pairs, and gen_batches refuses 0 items.
    for start in range(0, len(first), 1024):
        pairs = slice(start, start + 1024)
        differences = centers[first[pairs]].astype(np.float64) - centers[second[pairs]]
        distances[pairs] = np.sqrt(np.einsum("ij,ij->i", differences, differences))
    distances = som._frame.distance_to_raw(distances)
    neighbours = [[] for _ in range(fitted.n_nodes)]
    for a, b, distance in zip(first.tolist(), second.tolist(), distances.tolist(), strict=True):
        neighbours[a].append((b, distance))
        neighbours[b].append((a, distance))
    return [sorted(pairs) for pairs in neighbours]


def mean_distances(neighbours):
    """Mean distance of every node to its neighbours (the U-matrix in map order; 0 without neighbours),
    from :func:`neighbour_distances`, shape (n_nodes,)."""
    return np.array([np.mean([distance for _, distance in pairs]) if pairs else 0.0 for pairs in neighbours])


def map_geometry(som):
    """The shape of a fitted map: ``n_columns``, ``n_rows``, ``topology``."""
    fitted = som._fitted
    return {"n_columns": fitted.n_columns, "n_rows": fitted.n_rows, "topology": fitted.topology}


def fit_summary(averager, images):
    """The facts of a fit, under the keys of the command line's ``summary.json``, for a report of a map
    fitted outside the command line."""
    som = fitted_map(averager)
    parameters = som.get_params()
    if not isinstance(parameters.get("init"), str):
        parameters.pop("init", None)  # initial code vectors given as an array: not a parameter to show
    return {
        "parameters": parameters,
        "smoothness": som.smoothness_,
        "n_particles": len(averager.labels_),
        "image_shape": list(images.shape[1:]),
        "sigma": som.sigma_,
        "n_iter": som.n_iter_,
        "converged": som.converged_,
    }
