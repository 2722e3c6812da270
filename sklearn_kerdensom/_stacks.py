"""Image stacks transformed chunk by chunk: NumPy arrays, memory maps and Dask arrays alike.

The image transformers (CTF correction, Fourier cropping, filtering, normalization) work on one chunk of
images at a time, so that a memory-mapped stack larger than memory is never all read, and a Dask stack
stays lazy. Each gets its images through :func:`validated_stack` and transforms them with
:func:`map_stack`.
"""

import numpy as np
from sklearn.utils import check_array
from sklearn.utils.validation import check_is_fitted

from ._chunks import sample_chunks
from ._samples import (
    checked_finite,
    float_dask_array,
    is_dask_array,
    temporary_memmap,
    warn_if_memory_map_is_copied,
)


def validated_stack(X, input_name="X"):
    """``X`` as a float32 or float64 stack of shape (n_images, height, width).

    Dask arrays stay lazy (their pixels are checked block by block as they are computed); memory maps
    are not copied.
    """
    if is_dask_array(X):
        if X.ndim != 3:
            raise ValueError(
                f"{input_name} must be a stack of shape (n_images, height, width); got {X.shape}."
            )
        if any(len(chunks) != 1 for chunks in X.chunks[1:]):
            raise ValueError(
                f"the Dask array {input_name} is chunked within images; chunk it along images only."
            )
        return float_dask_array(X, input_name)
    warn_if_memory_map_is_copied(X, input_name)
    images = check_array(X, allow_nd=True, dtype=[np.float64, np.float32], input_name=input_name)
    if images.ndim != 3:
        raise ValueError(
            f"{input_name} must be a stack of shape (n_images, height, width); got shape {images.shape}."
        )
    return images


def fitted_stack(transformer, X):
    """``X`` validated for the ``transform`` of a fitted image-stack transformer: images of the shape
    it was fitted on (its ``image_shape_``)."""
    check_is_fitted(transformer)
    images = validated_stack(X)
    if tuple(images.shape[1:]) != transformer.image_shape_:
        raise ValueError(
            f"images have shape {tuple(images.shape[1:])}, but {type(transformer).__name__} was fitted on "
            f"{transformer.image_shape_}."
        )
    return images


class ImageStackTagsMixin:
    """The scikit-learn tags of a transformer of image stacks, shape (n_images, height, width), that
    keeps float32 images float32."""

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        tags.input_tags.two_d_array = False
        tags.input_tags.three_d_array = True
        return tags


def float_dtype(images):
    """The dtype a transform of ``images`` keeps: theirs if float32 or float64, else float64."""
    return images.dtype if images.dtype in (np.float32, np.float64) else np.dtype(np.float64)


def is_memory_mapped(images):
    """Whether ``images`` is, or is a view of, a :class:`numpy.memmap`."""
    return isinstance(images, np.memmap) or isinstance(getattr(images, "base", None), np.memmap)


def map_stack(images, transform, image_shape):
    """``transform(chunk, rows)`` over every chunk of a validated stack, in a new stack.

    Parameters
    ----------
    images : ndarray, memory map or Dask array of shape (n_images, height, width)
        As returned by :func:`validated_stack`; never modified.
    transform : callable
        ``transform(chunk, rows)`` gets a finite float array of the images ``rows`` (a slice) and returns
        their transforms, shape ``(len(chunk), *image_shape)``, a new array.
    image_shape : tuple of int
        ``(height, width)`` of the transformed images.

    Returns
    -------
    transformed : ndarray of shape (n_images, *image_shape), in the dtype of ``images``
        A lazy Dask array for a Dask array; for a memory map, a memory map of a temporary file in
        :func:`tempfile.gettempdir` (``TMPDIR``), written chunk by chunk and deleted with the array.
    """
    dtype = images.dtype
    if is_dask_array(images):
        return images.map_blocks(
            lambda block, block_info=None: _transformed(transform, block, block_info, dtype),
            chunks=(images.chunks[0], (image_shape[0],), (image_shape[1],)),
            dtype=dtype,
        )
    shape = (len(images), *image_shape)
    if is_memory_mapped(images):
        transformed = temporary_memmap(shape, dtype, "kerdensom-images-")
    else:
        transformed = np.empty(shape, dtype=dtype)
    n_pixels = max(int(np.prod(images.shape[1:])), int(np.prod(image_shape)))
    # A chunk's complex spectra take several times its pixels: 1 node keeps chunks within budget.
    for rows in sample_chunks(len(images), 4 * n_pixels, 1):
        # validated_stack's check_array has already found every pixel finite.
        transformed[rows] = transform(np.asarray(images[rows]), rows)
    return transformed


def _transformed(transform, block, block_info, dtype):
    start, stop = block_info[0]["array-location"][0]
    return transform(checked_finite(block), slice(start, stop)).astype(dtype, copy=False)
