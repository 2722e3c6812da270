"""Class averages and representatives: what a map of classes looks like."""

from dataclasses import replace
from functools import partial
from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, ClusterMixin, _fit_context, clone
from sklearn.pipeline import Pipeline
from sklearn.utils import check_array
from sklearn.utils._array_api import get_namespace
from sklearn.utils._openmp_helpers import _openmp_effective_n_threads
from sklearn.utils._param_validation import HasMethods, Interval, validate_params
from sklearn.utils.validation import check_is_fitted

from ._array_api import is_numpy_or_dask, like, namespace, to_numpy
from ._samples import float_dask_array, is_dask_array, samples_of, warn_if_memory_map_is_copied


def _class_sums(rows, terms, labels, n_classes):
    """Per-class sums of the rows and their counts, shape (n_classes, n_pixels + 1)."""
    # A one-hot product sums every class of a chunk at once.
    one_hot = np.zeros((len(rows), n_classes))
    one_hot[np.arange(len(rows)), labels] = 1.0
    return np.column_stack([one_hot.T @ rows, one_hot.sum(axis=0)])


def _checked_images(images, name="images"):
    """Images as float32/float64 arrays; memory maps and Dask arrays stay lazy (their values are
    checked as they are read)."""
    if is_dask_array(images):
        return float_dask_array(images, name)
    # The input's namespace under scikit-learn's array_api_dispatch, NumPy otherwise.
    xp, _ = get_namespace(images)
    warn_if_memory_map_is_copied(images, name)
    return check_array(images, allow_nd=True, dtype=[xp.float64, xp.float32], input_name=name)


def _checked_labels(labels, n_images, n_classes=None):
    """``labels`` as an integer array of one class per image in ``0 .. n_classes - 1``, and
    ``n_classes`` (``labels.max() + 1`` if None); a ValueError names what is wrong."""
    labels = np.asarray(labels)
    if labels.shape != (n_images,) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(
            f"labels must be {n_images} integers, one per image; got {labels.dtype} of shape {labels.shape}."
        )
    if n_images == 0:
        raise ValueError("there are no images (and no labels) to average.")
    if labels.min() < 0:
        raise ValueError(
            f"labels must be class numbers from 0; got {labels.min()} (a clusterer's noise label -1 is no "
            "class)."
        )
    n_classes = int(labels.max()) + 1 if n_classes is None else n_classes
    whole = isinstance(n_classes, (int, np.integer, float, np.floating)) and float(n_classes).is_integer()
    if isinstance(n_classes, bool) or not whole or n_classes < 1:
        raise ValueError(f"n_classes must be a positive integer; got {n_classes!r}.")
    if labels.max() >= n_classes:
        raise ValueError(f"labels must be in 0 .. {n_classes - 1}; got {labels.min()} .. {labels.max()}.")
    return labels, int(n_classes)


def class_averages(images, labels, n_classes=None):
    """Mean image of every class; an empty class is a zero image.

    Parameters
    ----------
    images : array-like of shape (n_images, ...)
        Full (unmasked) images, e.g. (n_images, height, width): a NumPy array,
        a memory map or a Dask array chunked along images, read chunk by chunk;
        or an array of another Array API namespace (e.g. on a GPU), averaged
        from a copy on the host and returned in its namespace.
    labels : array-like of int of shape (n_images,)
        Class of every image, ``0 .. n_classes - 1``.
    n_classes : int, default=None
        Number of classes (``labels.max() + 1`` if None), empty ones included.

    Returns
    -------
    averages : ndarray of shape (n_classes, ...)
        float32 for float32 images, else float64; accumulated in float64.
    counts : ndarray of shape (n_classes,)
        Images per class.
    """
    images = _checked_images(images)
    if not is_numpy_or_dask(images):
        # Images of another namespace (a GPU's) are averaged on the host, from one copy of them.
        averages, counts = class_averages(to_numpy(images), to_numpy(labels), n_classes)
        return like(averages, images), like(counts, images)
    labels, n_classes = _checked_labels(labels, len(images), n_classes)
    flat = samples_of(
        images.reshape(len(images), -1), None, np.float64, n_classes, n_threads=_openmp_effective_n_threads()
    )
    sums = flat.reduce(partial(_class_sums, n_classes=n_classes), per_sample=labels)
    counts = sums[:, -1].astype(np.intp)
    averages = sums[:, :-1] / np.maximum(counts, 1)[:, None]
    return averages.reshape(n_classes, *images.shape[1:]).astype(images.dtype), counts


# Measured on phase-flipped simulated particles (benchmarks/bench_averages.py): correlation with the true
# projection is flat for constants from 0.01 to 0.1 and falls beyond 0.3; 0.1 is the most regularized
# of the plateau, for small classes.
WIENER_CONSTANT = 0.1


@validate_params(
    {
        "images": ["array-like"],
        "labels": ["array-like"],
        "ctf": "no_validation",
        "pixel_size": [Interval(Real, 0, None, closed="neither")],
        "n_classes": [Interval(Integral, 1, None, closed="left"), None],
        "constant": [Interval(Real, 0, None, closed="neither")],
    },
    prefer_skip_nested_validation=True,
)
def wiener_class_averages(images, labels, ctf, pixel_size, n_classes=None, constant=WIENER_CONSTANT):
    """CTF-corrected average of every class of phase-flipped images: a Wiener filter over its members.

    For each class, ``sum_i |CTF_i| F_i / (sum_i CTF_i^2 + constant)`` in Fourier space, ``F_i`` the
    transforms of its (phase-flipped) images: the amplitudes that the CTFs damp are restored where the
    class's particles together measured them, and held back near the CTFs' common zeros. The CTF is
    taken without astigmatism (the mean of both defoci), which stays right after the images were
    rotated into alignment. An empty class is a zero image.

    Parameters
    ----------
    images : array-like of shape (n_images, height, width)
        Phase-flipped images (by :class:`~sklearn_kerdensom.ctf.PhaseFlipper` or RELION); a NumPy array
        or a memory map, read class by class.
    labels : array-like of int of shape (n_images,)
    ctf : CTFParameters or pandas.DataFrame
        Of the ``n_images`` particles (a table with RELION's columns, as
        :class:`~sklearn_kerdensom.ctf.PhaseFlipper` takes it).
    pixel_size : float
        Å per pixel of ``images``.
    n_classes : int, default=None
        ``labels.max() + 1`` if None.
    constant : float, default=0.1
        The Wiener constant, in units of squared CTF; > 0.

    Returns
    -------
    averages : ndarray of shape (n_classes, height, width)
        In the dtype of ``images``.
    counts : ndarray of shape (n_classes,)
    """
    from .ctf import CTFParameters, contrast_transfer

    images = _checked_images(images)
    if images.ndim != 3:
        raise ValueError(f"images must have shape (n_images, height, width); got {images.shape}.")
    labels, n_classes = _checked_labels(labels, len(images), n_classes)
    ctf = ctf if isinstance(ctf, CTFParameters) else CTFParameters.from_table(ctf)
    if len(ctf) != len(images):
        raise ValueError(f"{len(images)} images need as many CTFs; got {len(ctf)}.")
    mean_defocus = (ctf.defocus_u + ctf.defocus_v) / 2
    isotropic = replace(ctf, defocus_u=mean_defocus, defocus_v=mean_defocus)
    shape = images.shape[1:]
    counts = np.bincount(labels, minlength=n_classes)
    order = np.argsort(labels, kind="stable")
    ends = np.cumsum(counts)
    averages = np.zeros((n_classes, *shape), dtype=images.dtype)
    rows_per_chunk = max(1, 2**22 // int(np.prod(shape)))
    for label in np.flatnonzero(counts):
        members = order[ends[label] - counts[label] : ends[label]]
        numerator, denominator = 0.0, 0.0
        for start in range(0, len(members), rows_per_chunk):
            chunk = np.sort(members[start : start + rows_per_chunk])
            weights = np.abs(contrast_transfer(shape, pixel_size, isotropic.subset(chunk)))
            numerator = numerator + (weights * np.fft.rfft2(np.asarray(images[chunk], dtype=np.float64))).sum(
                axis=0
            )
            denominator = denominator + (weights**2).sum(axis=0)
        averages[label] = np.fft.irfft2(numerator / (denominator + constant), s=shape)
    return averages, counts


def mean_per_class(values, labels, n_classes):
    """Mean of a per-image quantity (e.g. a ground-truth coordinate) in every class; NaN for empty ones.

    Parameters
    ----------
    values : array-like of shape (n_images,)
    labels : array-like of int of shape (n_images,)
    n_classes : int

    Returns
    -------
    means : ndarray of shape (n_classes,)
    """
    values = np.asarray(values, dtype=np.float64)
    labels, n_classes = _checked_labels(labels, len(values), n_classes)
    counts = np.bincount(labels, minlength=n_classes)
    sums = np.bincount(labels, weights=values, minlength=n_classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / counts, np.nan)


def _final_step(estimator):
    return estimator[-1] if isinstance(estimator, Pipeline) else estimator


def _to_images(fitted, centers, image_shape):
    """Code vectors back to images through the inverse transforms of a pipeline's steps."""
    if isinstance(fitted, Pipeline):
        for _, step in reversed(fitted.steps[:-1]):
            if step == "passthrough" or step is None:
                continue
            if not hasattr(step, "inverse_transform"):
                return None
            centers = step.inverse_transform(centers)
    centers = to_numpy(centers)
    if centers[0].size != int(np.prod(image_shape)):
        return None
    return centers.reshape(len(centers), *image_shape)


def _estimator_input(estimator, images):
    """A pipeline takes the images as they are (its first step vectorizes them); a bare clusterer gets
    each image flattened to a vector."""
    if isinstance(estimator, Pipeline) or images.ndim <= 2:
        return images
    if not is_numpy_or_dask(images):
        return namespace(images).reshape(images, (images.shape[0], -1))
    return images.reshape(len(images), -1)


class ClassAverager(ClusterMixin, BaseEstimator):
    """Fit a clusterer on images and keep what a scientist looks at: class averages and representatives.

    Parameters
    ----------
    estimator : estimator object
        A clusterer, or a :class:`~sklearn.pipeline.Pipeline` ending in one,
        e.g. ``make_pipeline(MaskVectorizer(mask), KerDenSOM())``. It is cloned.
        A pipeline gets the images as they are; a bare clusterer gets every
        image flattened to a vector of all its pixels.

    Attributes
    ----------
    estimator_ : estimator object
        The fitted clone.
    labels_ : ndarray of shape (n_images,)
        Class of every training image.
    averages_ : ndarray of shape (n_classes, height, width)
        Mean of the full, unmasked member images of every class (zero images
        for empty classes), in the dtype of the images.
    counts_ : ndarray of shape (n_classes,)
        Images per class.
    representatives_ : ndarray of shape (n_classes, height, width) or None
        The clusterer's ``cluster_centers_`` turned back into images by the
        inverse transforms of the pipeline's steps (0 outside a mask); None when
        the clusterer has no centres or a step cannot be inverted.
    node_positions_ : ndarray of shape (n_classes, 2)
        Map coordinates of the classes, when the clusterer has them (KerDenSOM).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn_kerdensom import ClassAverager, KerDenSOM, MaskVectorizer, circular_mask
    >>> images = np.random.default_rng(0).normal(size=(100, 16, 16)).astype(np.float32)
    >>> pipeline = make_pipeline(MaskVectorizer(circular_mask((16, 16), 6)), KerDenSOM(3, 3, random_state=0))
    >>> averager = ClassAverager(pipeline).fit(images)
    >>> averager.averages_.shape, averager.representatives_.shape
    ((9, 16, 16), (9, 16, 16))
    """

    _parameter_constraints: dict = {"estimator": [HasMethods(["fit"])]}

    def __init__(self, estimator):
        self.estimator = estimator

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y=None):
        """Fit the clusterer on the images, then average every class.

        Parameters
        ----------
        X : array-like of shape (n_images, height, width) or (n_images, n_features)
        y : Ignored

        Returns
        -------
        self : ClassAverager
        """
        images = _checked_images(X, "X")
        vectors = _estimator_input(self.estimator, images)
        self.estimator_ = clone(self.estimator).fit(vectors)
        clusterer = _final_step(self.estimator_)
        labels = getattr(clusterer, "labels_", None)
        if labels is None and not hasattr(self.estimator_, "predict"):
            raise ValueError(
                f"ClassAverager needs a clusterer (with labels_ or predict); {type(clusterer).__name__} "
                "gives no classes."
            )
        labels = to_numpy(self.estimator_.predict(vectors) if labels is None else labels)
        self.labels_ = like(labels, images)
        centers = getattr(clusterer, "cluster_centers_", None)
        n_classes = centers.shape[0] if centers is not None else getattr(clusterer, "n_clusters", None)
        self.averages_, self.counts_ = class_averages(images, labels, n_classes)
        self.representatives_ = None
        if centers is not None:
            self.representatives_ = like(_to_images(self.estimator_, centers, images.shape[1:]), images)
        if hasattr(clusterer, "node_positions_"):
            self.node_positions_ = clusterer.node_positions_
        if hasattr(self.estimator_, "n_features_in_"):
            self.n_features_in_ = self.estimator_.n_features_in_
        return self

    def _estimator_X(self, X):
        """``X`` (images) as the fitted estimator takes them."""
        check_is_fitted(self)
        return _estimator_input(self.estimator_, _checked_images(X, "X"))

    def _delegate(self, method, X):
        X = self._estimator_X(X)  # first: it checks that the averager is fitted
        return getattr(self.estimator_, method)(X)

    def predict(self, X):
        """Class of each image (delegated to the fitted estimator)."""
        return self._delegate("predict", X)

    def score(self, X, y=None):
        """Score of the fitted estimator (for KerDenSOM: mean log-likelihood, higher is better)."""
        return self._delegate("score", X)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        return tags
