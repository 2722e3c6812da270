"""Particle images made ready for classification: Fourier cropping, low-pass filtering and normalization.

Real particle boxes are large (256 px and more) and sampled far finer than the resolution at which
KerDenSOM can tell classes apart. RELION users downsample, filter and normalize them, in this order:

1. :class:`FourierCropper` (``kerdensom classify --box``): keeps the Fourier components of the lowest
   frequencies, so the image is smaller, its pixels larger, and nothing aliases (RELION's rescaling
   at extraction);
2. :class:`LowPassFilter` (``--lowpass``): a raised-cosine low-pass at a resolution in Å;
3. :class:`BackgroundNormalizer` (``--normalize``): background mean 0 and standard deviation 1 outside
   a circle (RELION's normalization at extraction).

Each is a scikit-learn transformer over stacks of shape (n_images, height, width), NumPy arrays,
memory maps or Dask arrays, and each has a function for one stack in memory.
"""

from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.utils._param_validation import Interval, validate_params

from ._stacks import ImageStackTagsMixin, fitted_stack, float_dtype, map_stack, validated_stack

# RELION's default background circle: a diameter of 75 % of the box.
BACKGROUND_RADIUS_FRACTION = 0.375


def _spectrum_rows(height, box):
    """Indices of the rows of an ``rfft2`` of ``height`` rows that a ``box``-row one keeps: the lowest
    frequencies, positive then negative, in FFT order."""
    return np.r_[0 : (box + 1) // 2, height - box // 2 : height]


def _check_crop(shape, box):
    """A ValueError unless images of ``shape`` can be Fourier-cropped to ``box``."""
    if shape[0] != shape[1]:
        raise ValueError(f"Fourier cropping needs square images; got {shape[1]} x {shape[0]} px.")
    if box > shape[0]:
        raise ValueError(f"box={box} is larger than the {shape[0]} px images: it can only shrink them.")


def _check_resolution(resolution, pixel_size):
    """A ValueError for a low-pass ``resolution`` finer than the Nyquist limit of ``pixel_size``."""
    if resolution < 2 * pixel_size:
        raise ValueError(
            f"resolution={resolution:g} Å is finer than the Nyquist limit of {pixel_size:g} Å pixels "
            f"({2 * pixel_size:g} Å): the filter would remove nothing."
        )


@validate_params(
    {"images": ["array-like"], "box": [Interval(Integral, 1, None, closed="left")]},
    prefer_skip_nested_validation=True,
)
def fourier_crop(images, box):
    """Downsample square images to ``box x box`` pixels by cropping their Fourier transforms.

    Parameters
    ----------
    images : array-like of shape (n, size, size)
    box : int
        New size in pixels, at most ``size``. The pixel size grows by ``size / box``.

    Returns
    -------
    cropped : ndarray of shape (n, box, box), in the dtype of ``images`` (float64 for integers)
        Pixel values on the same scale: a constant image stays the same constant.
    """
    images = np.asarray(validated_stack(images, "images"))
    _check_crop(images.shape[1:], box)
    return _fourier_crop(images, box)


def _fourier_crop(images, box):
    """:func:`fourier_crop` of a checked stack."""
    dtype = float_dtype(images)
    size = images.shape[-1]
    if box == size:
        return images.astype(dtype, copy=True)
    spectrum = np.fft.rfft2(images)
    cropped = spectrum[:, _spectrum_rows(size, box), : box // 2 + 1]
    return (np.fft.irfft2(cropped, s=(box, box)) * (box / size) ** 2).astype(dtype, copy=False)


@validate_params(
    {
        "images": ["array-like"],
        "pixel_size": [Interval(Real, 0, None, closed="neither")],
        "resolution": [Interval(Real, 0, None, closed="neither")],
        "edge_width": [Interval(Real, 0, None, closed="neither")],
    },
    prefer_skip_nested_validation=True,
)
def low_pass(images, pixel_size, resolution, edge_width=2.0):
    """Low-pass filter images with a raised-cosine edge.

    Parameters
    ----------
    images : array-like of shape (n, height, width)
    pixel_size : float
        Å per pixel.
    resolution : float
        Å: frequencies below ``1 / resolution`` are kept, those above it removed; at least the Nyquist
        limit, ``2 * pixel_size``.
    edge_width : float, default=2
        Width of the raised-cosine edge, centred on ``1 / resolution``, in Fourier pixels of the larger
        image side (RELION's default for its low-pass filters); > 0.

    Returns
    -------
    filtered : ndarray of shape (n, height, width), in the dtype of ``images`` (float64 for integers)
    """
    images = np.asarray(validated_stack(images, "images"))
    _check_resolution(resolution, pixel_size)
    return _low_pass(images, pixel_size, resolution, edge_width)


def _low_pass(images, pixel_size, resolution, edge_width=2.0):
    """:func:`low_pass` of a checked stack."""
    dtype = float_dtype(images)
    height, width = images.shape[1:]
    frequency = np.hypot(
        np.fft.fftfreq(height, d=pixel_size)[:, None], np.fft.rfftfreq(width, d=pixel_size)[None, :]
    )
    half_edge = edge_width / (2 * max(height, width) * pixel_size)
    position = np.clip((frequency - (1 / resolution - half_edge)) / (2 * half_edge), 0.0, 1.0)
    weights = 0.5 * (1 + np.cos(np.pi * position))
    return np.fft.irfft2(np.fft.rfft2(images) * weights, s=(height, width)).astype(dtype, copy=False)


def background_mask(shape, radius):
    """The background of images of ``shape``: pixels farther than ``radius`` from the centre (``n // 2``)."""
    rows, columns = np.indices(shape)
    return np.hypot(rows - shape[0] // 2, columns - shape[1] // 2) > radius


def _background(shape, radius):
    """:func:`background_mask`, or a ValueError if it has fewer than 2 pixels."""
    background = background_mask(shape, radius)
    if background.sum() < 2:
        raise ValueError(
            f"the background (pixels beyond {radius:g} px of the centre) of {shape[1]} x {shape[0]} px "
            "images has fewer than 2 pixels; give a smaller radius."
        )
    return background


@validate_params(
    {"images": ["array-like"], "radius": [Interval(Real, 0, None, closed="left")]},
    prefer_skip_nested_validation=True,
)
def normalize_background(images, radius):
    """Give every image background mean 0 and standard deviation 1, as RELION does at extraction.

    Parameters
    ----------
    images : array-like of shape (n, height, width)
    radius : float
        Pixels farther than ``radius`` from the centre (``n // 2``) are the background.

    Returns
    -------
    normalized : ndarray of shape (n, height, width), in the dtype of ``images`` (float64 for integers)

    Raises
    ------
    ValueError
        If an image holds NaN or infinite pixels, the background has fewer than 2 pixels, or an image's
        background is constant.
    """
    return _normalize_background(np.asarray(validated_stack(images, "images")), radius)


def _normalize_background(images, radius):
    """:func:`normalize_background` of a checked stack."""
    dtype = float_dtype(images)
    background = _background(images.shape[1:], radius)
    values = images[:, background].astype(np.float64)
    mean, spread = values.mean(axis=1), values.std(axis=1)
    if not np.all(spread > 0):
        raise ValueError(
            f"an image has a constant background (every pixel beyond {radius:g} px of the centre is "
            f"{float(mean[~(spread > 0)][0]):g}): it cannot be normalized."
        )
    return ((images - mean[:, None, None]) / spread[:, None, None]).astype(dtype, copy=False)


class _StackTransformer(ImageStackTagsMixin, TransformerMixin, BaseEstimator):
    """A stateless transformer of image stacks: :meth:`fit` checks the images and records their shape;
    :meth:`transform` applies :meth:`_transform_chunk` chunk by chunk (:func:`map_stack`)."""

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Check the images and the parameters against them.

        Parameters
        ----------
        X : array-like of shape (n_images, height, width)
        y : Ignored

        Returns
        -------
        self
        """
        images = validated_stack(X)
        self.image_shape_ = tuple(images.shape[1:])
        self._fit_shape(self.image_shape_)
        return self

    def transform(self, X):
        """Transform the images.

        Parameters
        ----------
        X : array-like of shape (n_images, height, width)
            Never modified.

        Returns
        -------
        images : ndarray of shape (n_images, height, width) (:class:`FourierCropper`: ``box``)
            float32 for float32 images, else float64. A lazy Dask array for a Dask array; a memory map of
            a temporary file for a memory map.
        """
        images = fitted_stack(self, X)
        return map_stack(images, lambda chunk, rows: self._transform_chunk(chunk), self._output_shape())

    def _fit_shape(self, shape):
        """Record what the images' ``shape`` decides; a ValueError if the parameters do not suit it."""

    def _output_shape(self):
        return self.image_shape_


class FourierCropper(_StackTransformer):
    """Downsample square particle images by Fourier cropping (RELION's rescaling at extraction).

    Parameters
    ----------
    box : int, default=64
        Size of the cropped images in pixels, at most the images' size. Their pixel size grows by
        ``size / box``.

    Attributes
    ----------
    image_shape_ : tuple of int
        ``(size, size)`` of the images seen in :meth:`fit`.
    """

    _parameter_constraints = {"box": [Interval(Integral, 1, None, closed="left")]}

    def __init__(self, box=64):
        self.box = box

    def _fit_shape(self, shape):
        _check_crop(shape, self.box)

    def _output_shape(self):
        return (self.box, self.box)

    def _transform_chunk(self, chunk):
        return _fourier_crop(chunk, self.box)


class LowPassFilter(_StackTransformer):
    """Low-pass filter particle images at a resolution in Å, with a raised-cosine edge.

    Parameters
    ----------
    resolution : float, default=20
        Å: detail finer than this is removed.
    pixel_size : float, default=1
        Å per pixel of the images.

    Attributes
    ----------
    image_shape_ : tuple of int
        ``(height, width)`` of the images seen in :meth:`fit`.
    """

    _parameter_constraints = {
        "resolution": [Interval(Real, 0, None, closed="neither")],
        "pixel_size": [Interval(Real, 0, None, closed="neither")],
    }

    def __init__(self, resolution=20.0, pixel_size=1.0):
        self.resolution = resolution
        self.pixel_size = pixel_size

    def _fit_shape(self, shape):
        _check_resolution(self.resolution, self.pixel_size)

    def _transform_chunk(self, chunk):
        return _low_pass(chunk, self.pixel_size, self.resolution)


class BackgroundNormalizer(_StackTransformer):
    """Give every particle image background mean 0 and standard deviation 1 (RELION's normalization).

    Parameters
    ----------
    radius : float, default=None
        Pixels farther than ``radius`` from the image centre are the background. None: RELION's default,
        a circle of 75 % of the box's diameter (``0.375 * size``).

    Attributes
    ----------
    image_shape_ : tuple of int
        ``(height, width)`` of the images seen in :meth:`fit`.
    radius_ : float
        The background radius used, in pixels.
    """

    _parameter_constraints = {"radius": [Interval(Real, 0, None, closed="left"), None]}

    def __init__(self, radius=None):
        self.radius = radius

    def _fit_shape(self, shape):
        self.radius_ = BACKGROUND_RADIUS_FRACTION * min(shape) if self.radius is None else float(self.radius)
        _background(shape, self.radius_)

    def _transform_chunk(self, chunk):
        return _normalize_background(chunk, self.radius_)
