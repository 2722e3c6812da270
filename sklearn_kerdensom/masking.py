"""Images to vectors of the pixels inside a mask, and back."""

import math

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.utils import check_array
from sklearn.utils._array_api import check_same_namespace, get_namespace
from sklearn.utils.validation import check_is_fitted, validate_data

from ._array_api import is_numpy_or_dask, like, namespace, to_numpy
from ._chunks import sample_chunks
from ._samples import (
    checked_finite,
    float_dask_array,
    is_dask_array,
    temporary_memmap,
    warn_if_memory_map_is_copied,
)
from ._stacks import is_memory_mapped


def circular_mask(shape, radius, soft_edge=0.0):
    """A disc centred on the image centre (pixel ``n // 2`` along each axis).

    Parameters
    ----------
    shape : tuple of int
        ``(height, width)`` in pixels.
    radius : float
        Radius in pixels: pixels at distance ``<= radius`` from the centre are in.
    soft_edge : float, default=0
        Width in pixels of a raised-cosine fall-off outside ``radius``; 0 gives
        a boolean mask.

    Returns
    -------
    mask : ndarray of shape ``shape``
        bool, or float64 in [0, 1] when ``soft_edge > 0``.

    Raises
    ------
    ValueError
        If ``shape`` is not two positive sizes, ``radius`` is not a finite
        number > 0 or ``soft_edge`` is not a finite number >= 0.
    """
    shape = _checked_image_shape(shape, "shape")
    radius = _finite_number(radius, "radius")
    soft_edge = _finite_number(soft_edge, "soft_edge")
    if radius <= 0:
        raise ValueError(f"radius must be > 0 pixels; got {radius}.")
    if soft_edge < 0:
        raise ValueError(f"soft_edge must be >= 0 pixels; got {soft_edge}.")
    rows, columns = np.indices(shape)
    distance = np.hypot(rows - shape[0] // 2, columns - shape[1] // 2)
    if soft_edge == 0:
        return distance <= radius
    fall_off = np.clip((distance - radius) / soft_edge, 0.0, 1.0)
    return 0.5 * (1.0 + np.cos(np.pi * fall_off))


def _checked_image_shape(shape, name):
    """``(height, width)`` as a tuple of two positive ints; a ValueError names ``name`` otherwise."""
    if not isinstance(shape, (tuple, list)) or len(shape) != 2:
        raise ValueError(f"{name} must be (height, width), two sizes in pixels; got {shape!r}.")
    if not all(isinstance(size, (int, np.integer)) and not isinstance(size, bool) for size in shape) or (
        min(shape) < 1
    ):
        raise ValueError(f"{name} must be (height, width) with positive integer sizes; got {shape!r}.")
    return (int(shape[0]), int(shape[1]))


def _checked_mask_values(mask):
    """A 2-D mask checked as :class:`MaskVectorizer` uses it: boolean, or weights in [0, 1] (clipped
    to it within rounding); a ValueError names what is wrong (shape, NaN, values, no pixel)."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must be a 2-D image; got shape {mask.shape}.")
    if mask.dtype != bool:
        mask = check_array(mask, dtype=np.float64, input_name="mask")
        low, high = float(mask.min()), float(mask.max())
        if low < -_MASK_TOLERANCE or high > 1 + _MASK_TOLERANCE:
            # repr, not a rounded format: a value just outside [0, 1] must show why it is refused.
            raise ValueError(f"mask values must be in [0, 1]; got values from {low!r} to {high!r}.")
        # np.clip makes a new array: check_array may have returned the user's own mask.
        mask = np.clip(mask, 0.0, 1.0)
    if not np.any(mask):
        raise ValueError("mask selects no pixel: every value is 0.")
    return mask


def _finite_number(value, name):
    # NaN passes every comparison check (NaN <= 0 is False), and an infinite radius or edge is no disc.
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{name} must be a finite number of pixels; got {value!r}.")
    return number


# Soft masks saved in float32, or resampled, stray from [0, 1] by rounding errors of this order.
_MASK_TOLERANCE = 1e-6


class MaskVectorizer(TransformerMixin, BaseEstimator):
    """Turn images into vectors of the pixels inside a mask (Xmipp's ``image_vectorize``).

    Parameters
    ----------
    mask : array-like of shape (height, width), default=None
        Boolean, or soft with values in [0, 1]: pixels are weighted by the mask
        value and pixels of weight 0 are dropped. (Xmipp truncates soft masks to
        integers, keeping only pixels of value 1; we keep the weights.) Values
        within 1e-6 of [0, 1], rounding errors of the program that made the
        mask, are taken as 0 or 1. A weight so small that it is 0 in the dtype
        of the images (below about 1e-45 for float32) erases its pixel from
        the vectors, so :meth:`inverse_transform` gives 0 there, as outside the
        mask.
    image_shape : tuple of int, default=None
        ``(height, width)`` of flattened input images ``(n, height * width)``.
        Without it, flattened input takes the mask's shape, and with neither
        mask nor shape 2-D input passes through whole.

    Attributes
    ----------
    image_shape_ : tuple of int or None
        Shape of the images; None when 2-D input passes through.
    pixel_indices_ : ndarray of shape (n_features_out,)
        Flat (raster order) indices of the kept pixels.
    pixel_weights_ : ndarray of shape (n_features_out,)
        Weight of each kept pixel (1 for a boolean mask).
    n_features_in_ : int
        Pixels per image, ``height * width``.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Defined when 2-D input has feature names that are all strings.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_kerdensom import MaskVectorizer, circular_mask
    >>> images = np.ones((10, 32, 32), dtype=np.float32)
    >>> MaskVectorizer(circular_mask((32, 32), 12)).fit_transform(images).shape
    (10, 441)
    """

    _parameter_constraints: dict = {
        "mask": ["array-like", None],
        "image_shape": [tuple, list, None],
    }

    def __init__(self, mask=None, image_shape=None):
        self.mask = mask
        self.image_shape = image_shape

    def _checked_mask(self):
        return _checked_mask_values(self.mask)

    def _image_shape(self, X, mask):
        """Shape of the images of ``X``, or None for pass-through."""
        if X.ndim == 3:
            return X.shape[1:]
        if self.image_shape is not None:
            shape = _checked_image_shape(self.image_shape, "image_shape")
        elif mask is not None:
            shape = mask.shape
        else:
            return None
        if len(shape) != 2 or shape[0] * shape[1] != X.shape[1]:
            one_image = " (one image of that shape is a stack of one: X[None])" if X.shape == shape else ""
            raise ValueError(
                f"flattened images have {X.shape[1]} pixels, which does not match the image shape "
                f"{shape}{one_image}."
            )
        return shape

    def _validated(self, X, reset):
        """Images as an array of float32 or float64; 2-D input also records feature names.

        Dask arrays stay lazy (their pixels are checked as blocks are computed);
        memory maps are not copied.
        """
        if is_dask_array(X):
            if X.ndim not in (2, 3):
                raise ValueError(f"images must have shape (n, height, width) or (n, pixels); got {X.shape}.")
            if any(len(chunks) != 1 for chunks in X.chunks[1:]):
                raise ValueError(
                    "the Dask array of images is chunked within images; chunk it along images only."
                )
            return float_dask_array(X)
        # The input's namespace under scikit-learn's array_api_dispatch, NumPy otherwise.
        xp, _ = get_namespace(X)
        warn_if_memory_map_is_copied(X)
        images = check_array(X, allow_nd=True, dtype=[xp.float64, xp.float32], input_name="X")
        if images.ndim == 3:
            return images
        if images.ndim != 2:
            raise ValueError(
                f"images must have shape (n, height, width) or (n, height * width); got {images.shape}."
            )
        return validate_data(self, X, reset=reset, dtype=[xp.float64, xp.float32])

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Check the mask against the images and record which pixels to keep.

        Parameters
        ----------
        X : array-like of shape (n_images, height, width) or (n_images, height * width)
        y : Ignored

        Returns
        -------
        self : MaskVectorizer
        """
        X = self._validated(X, reset=True)
        mask = None if self.mask is None else self._checked_mask()
        self.image_shape_ = self._image_shape(X, mask)
        if mask is not None and mask.shape != self.image_shape_:
            raise ValueError(f"mask has shape {mask.shape}, but the images have shape {self.image_shape_}.")
        self.n_features_in_ = X.shape[1] if X.ndim == 2 else int(np.prod(X.shape[1:]))
        if mask is None:
            pixel_indices = np.arange(self.n_features_in_)
            pixel_weights = np.ones(self.n_features_in_)
        else:
            pixel_indices = np.flatnonzero(mask)
            pixel_weights = mask.ravel()[pixel_indices].astype(np.float64)
        self._soft = not np.all(pixel_weights == 1)
        # In the namespace and on the device of X, as scikit-learn's array_api_dispatch has it.
        self.pixel_indices_ = like(pixel_indices, X)
        self.pixel_weights_ = like(pixel_weights, X)
        return self

    def transform(self, X):
        """Vectors of the (weighted) pixels inside the mask, in raster order.

        Parameters
        ----------
        X : array-like of shape (n_images, height, width) or (n_images, height * width)

        Returns
        -------
        vectors : ndarray of shape (n_images, n_pixels_in_mask)
            float32 for float32 images, else float64. A lazy Dask array for a
            Dask array; for memory-mapped images, a memory map of a temporary
            file, written chunk by chunk (memory stays bounded).
        """
        check_is_fitted(self)
        if not is_dask_array(X):
            check_same_namespace(X, self, attribute="pixel_indices_", method="transform")
        X = self._validated(X, reset=False)
        shape = X.shape[1:] if X.ndim == 3 else None
        if shape is not None and self.image_shape_ is not None and tuple(shape) != self.image_shape_:
            raise ValueError(
                f"images have shape {tuple(shape)}, but the mask was fitted for {self.image_shape_}."
            )
        n_pixels = int(np.prod(X.shape[1:]))
        if n_pixels != self.n_features_in_:
            raise ValueError(
                f"images have {n_pixels} pixels; MaskVectorizer was fitted for {self.n_features_in_}."
            )
        if is_dask_array(X):
            return X.map_blocks(
                lambda block: self._vectorize(checked_finite(block)),
                drop_axis=tuple(range(2, X.ndim)),
                chunks=(X.chunks[0], (self.pixel_indices_.shape[0],)),
                dtype=X.dtype,
            )
        if is_memory_mapped(X):
            return self._vectorize_to_memmap(X)
        return self._vectorize(X)

    def _vectorize(self, images):
        """Masked, weighted pixel vectors of images already checked to be finite."""
        if not is_numpy_or_dask(images):
            return self._vectorize_on_device(images)
        images = np.asarray(images)
        vectors = images.reshape(len(images), -1)[:, to_numpy(self.pixel_indices_)]
        if self._soft:
            vectors *= to_numpy(self.pixel_weights_).astype(vectors.dtype)
        return vectors

    def _vectorize_on_device(self, images):
        """:meth:`_vectorize` for an array of another Array API namespace, on its device."""
        xp = namespace(images)
        flat = xp.reshape(images, (images.shape[0], -1))
        vectors = xp.take(flat, self.pixel_indices_, axis=1)
        if self._soft:
            vectors = vectors * xp.astype(self.pixel_weights_, vectors.dtype)
        return vectors

    def _vectorize_to_memmap(self, images):
        """Vectors of memory-mapped images, written chunk by chunk to a temporary memory map (in
        :func:`tempfile.gettempdir`: ``TMPDIR``), so that neither the images nor the vectors are ever
        all in memory. The file is deleted when the returned array is."""
        shape = (len(images), self.pixel_indices_.shape[0])
        vectors = temporary_memmap(shape, images.dtype, "kerdensom-vectors-")
        for rows in sample_chunks(len(images), self.n_features_in_, 1):
            vectors[rows] = self._vectorize(images[rows])
        return vectors

    def inverse_transform(self, X):
        """Images from vectors: pixels outside the mask are 0, weighting undone inside.

        Parameters
        ----------
        X : array-like of shape (n_images, n_pixels_in_mask)

        Returns
        -------
        images : ndarray of shape (n_images, height, width)
            Or (n_images, n_features) when 2-D input passed through. In the
            dtype of ``X``; pixels whose weight is 0 in that dtype are 0, as
            :meth:`transform` erased them.
        """
        check_is_fitted(self)
        if not is_numpy_or_dask(X):
            # A few code vectors in practice: scattered on the host, returned where they came from.
            return like(self.inverse_transform(to_numpy(X)), X)
        vectors = check_array(X, dtype=[np.float64, np.float32], input_name="X")
        pixel_indices = to_numpy(self.pixel_indices_)
        if vectors.shape[1] != len(pixel_indices):
            raise ValueError(
                f"vectors have {vectors.shape[1]} values, but the mask has {len(pixel_indices)} pixels."
            )
        # The weights as transform applied them. One that underflowed to 0 in the vectors' dtype left
        # nothing of its pixel to recover, and dividing by it would give 0 / 0 = NaN.
        weights = to_numpy(self.pixel_weights_).astype(vectors.dtype)
        kept = weights != 0
        flat = np.zeros((len(vectors), self.n_features_in_), dtype=vectors.dtype)
        flat[:, pixel_indices[kept]] = vectors[:, kept] / weights[kept]
        if self.image_shape_ is None:
            return flat
        return flat.reshape(len(vectors), *self.image_shape_)

    def get_feature_names_out(self, input_features=None):
        """Names of the output features: ``pixel_<row>_<column>`` of each kept pixel.

        When 2-D input passes through, the input feature names.
        """
        check_is_fitted(self)
        if self.image_shape_ is None:
            if input_features is None:
                input_features = getattr(self, "feature_names_in_", None)
            if input_features is None:
                return np.asarray([f"x{i}" for i in range(self.n_features_in_)], dtype=object)
            if len(input_features) != self.n_features_in_:
                raise ValueError(
                    f"input_features has {len(input_features)} names, expected {self.n_features_in_}."
                )
            return np.asarray(input_features, dtype=object)
        rows, columns = np.unravel_index(to_numpy(self.pixel_indices_), self.image_shape_)
        return np.asarray(
            [f"pixel_{row}_{column}" for row, column in zip(rows, columns, strict=True)], dtype=object
        )

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        tags.array_api_support = True
        return tags
