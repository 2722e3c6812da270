"""Images for a web page: binned to a display size, stretched to 8 bits, encoded as PNG data URIs.

PNG is written here with :mod:`zlib` (8-bit greyscale), so that a report needs no imaging library, and
its bytes are the same on every machine.
"""

import base64
import math
import struct
import zlib

import numpy as np

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_GREYSCALE = 0
_NO_FILTER = 0
_PAETH_FILTER = 4


def binning_factor(shape, max_size):
    """The smallest whole factor that bins an image of ``shape`` (height, width) to at most ``max_size``
    pixels a side."""
    return max(1, math.ceil(max(shape) / max_size))


def binned_to(images, max_size):
    """Images shrunk by the smallest whole factor that makes them at most ``max_size`` pixels a side.

    Each output pixel is the mean of a ``factor x factor`` block, a low-pass filter that keeps a noisy
    particle from aliasing as it shrinks; rows and columns beyond a whole number of blocks are dropped.

    Parameters
    ----------
    images : array-like of shape (n_images, height, width)
    max_size : int
        Largest height or width of the result, in pixels.

    Returns
    -------
    binned : ndarray of shape (n_images, height // factor, width // factor), float64
    """
    images = np.asarray(images, dtype=np.float64)
    n_images, height, width = images.shape
    factor = binning_factor((height, width), max_size)
    if factor == 1:
        return images
    height, width = height // factor, width // factor
    blocks = images[:, : height * factor, : width * factor].reshape(n_images, height, factor, width, factor)
    return blocks.mean(axis=(2, 4))


def display_bytes(images, clip_percent=0.0):
    """Images as 8-bit grey levels, each stretched over its own range.

    Parameters
    ----------
    images : array-like of shape (n_images, height, width)
    clip_percent : float, default=0.0
        Percent of the darkest and of the brightest pixels of each image that saturate, so that a few
        extreme pixels of a noisy particle do not flatten the contrast of the rest; 0 stretches each image
        over its min .. max (as :func:`~sklearn_kerdensom.plotting.plot_map` draws them).

    Returns
    -------
    grey : ndarray of shape (n_images, height, width), uint8
        A constant image (an empty class's zero average) is mid-grey (128).
    """
    images = np.asarray(images, dtype=np.float64)
    flat = images.reshape(len(images), -1)
    low, high = np.percentile(flat, [clip_percent, 100.0 - clip_percent], axis=1, keepdims=True)
    span = high - low
    scaled = np.divide(flat - low, span, out=np.full_like(flat, 0.5), where=span > 0)
    return np.rint(255.0 * np.clip(scaled, 0.0, 1.0)).astype(np.uint8).reshape(images.shape)


def _unfiltered(grey):
    """The rows of an 8-bit image as PNG stores them without a filter, each led by its filter type byte."""
    return np.column_stack([np.full(len(grey), _NO_FILTER, dtype=np.uint8), grey])


def _paeth_filtered(grey):
    """The rows of an 8-bit image with PNG's Paeth filter applied, each led by its filter type byte.

    The predictor of a pixel depends only on unfiltered neighbours (left, up, up-left), so the whole image
    is filtered at once.
    """
    raw = grey.astype(np.int16)
    left = np.zeros_like(raw)
    left[:, 1:] = raw[:, :-1]
    up = np.zeros_like(raw)
    up[1:] = raw[:-1]
    up_left = np.zeros_like(raw)
    up_left[1:, 1:] = raw[:-1, :-1]
    estimate = left + up - up_left
    to_left, to_up, to_up_left = (np.abs(estimate - neighbour) for neighbour in (left, up, up_left))
    predictor = np.where(
        (to_left <= to_up) & (to_left <= to_up_left), left, np.where(to_up <= to_up_left, up, up_left)
    )
    filtered = ((raw - predictor) % 256).astype(np.uint8)
    return np.column_stack([np.full(len(grey), _PAETH_FILTER, dtype=np.uint8), filtered])


def _chunk(kind, payload):
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_bytes(grey):
    """An 8-bit greyscale image as the bytes of a PNG file.

    Parameters
    ----------
    grey : array-like of shape (height, width), uint8

    Returns
    -------
    png : bytes
    """
    grey = np.ascontiguousarray(grey, dtype=np.uint8)
    height, width = grey.shape
    header = struct.pack(">IIBBBBB", width, height, 8, _GREYSCALE, 0, 0, 0)
    # The Paeth filter shrinks smooth images (averages, representatives) and grows pure noise (a single
    # particle) by ~5 %: each image keeps the smaller.
    pixels = min((zlib.compress(rows(grey).tobytes(), 9) for rows in (_paeth_filtered, _unfiltered)), key=len)
    return _PNG_SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", pixels) + _chunk(b"IEND", b"")


def data_uri(content, media_type="image/png"):
    """``content`` (bytes) as a ``data:`` URI, which a page shows without fetching anything."""
    return f"data:{media_type};base64,{base64.b64encode(content).decode('ascii')}"


def png_data_uris(images, *, max_size, clip_percent=0.0):
    """Images as PNG data URIs, binned to at most ``max_size`` pixels a side and stretched to 8 bits.

    Parameters
    ----------
    images : array-like of shape (n_images, height, width)
    max_size : int
        Largest side of the encoded images, in pixels (see :func:`binned_to`).
    clip_percent : float, default=0.0
        As in :func:`display_bytes`.

    Returns
    -------
    uris : list of str
        One per image.
    """
    if len(images) == 0:
        return []
    grey = display_bytes(binned_to(images, max_size), clip_percent)
    return [data_uri(png_bytes(image)) for image in grey]
