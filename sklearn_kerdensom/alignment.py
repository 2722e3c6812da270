"""2-D alignment of particle images, with RELION's conventions.

RELION's documentation ("Conventions", Orientations) says: the angles rotate the
reference into the observation (the particle image), the origin offsets
(``rlnOriginX/Y``, or ``rlnOriginX/YAngst`` divided by the pixel size) shift the
observation into the reference projection, and offsets are applied *before*
rotations. The centre of an image of ``n`` pixels is pixel ``n // 2`` (as in
Xmipp and SPIDER).

In pixel coordinates relative to that centre, ``x`` along columns and ``y``
along rows (the first pixel is the top left), the in-plane Euler matrix of
``psi`` is ``E = [[cos psi, sin psi], [-sin psi, cos psi]]`` and a reference
``R`` is observed as ``O(r) = R(E.T (r + t))`` for an origin offset ``t``. So:

* a particle whose reference sits at the centre appears at ``-t``: a positive
  ``rlnOriginX`` puts it left of the centre;
* aligning undoes both: ``aligned(r) = O(E r - t)``.

``mirror`` (Xmipp's ``flip``; RELION has none) means the observation is of the
mirrored reference (``x -> -x``) before the rotation and shift: then
``aligned(r) = O(E F r - t)`` with ``F = diag(-1, 1)``.

The resampling is a cubic B-spline with periodic borders, as Xmipp's
``applyGeo`` does (reference §8.1); images whose transform is the identity are
copied without interpolation.
"""

from itertools import pairwise

import numpy as np
from joblib import Parallel, delayed, effective_n_jobs
from scipy import ndimage


def _check_images(images):
    images = np.asarray(images)
    if not (np.issubdtype(images.dtype, np.integer) or np.issubdtype(images.dtype, np.floating)):
        raise ValueError(f"images must hold real numbers; got {images.dtype}.")
    if images.ndim != 3:
        raise ValueError(f"images must have shape (n_images, height, width); got shape {images.shape}.")
    if not np.all(np.isfinite(images)):
        raise ValueError("images contain NaN or infinite pixels.")
    return images


def _per_image(values, n_images, shape, name):
    values = np.zeros((n_images, *shape)) if values is None else np.asarray(values, dtype=np.float64)
    if values.shape != (n_images, *shape):
        raise ValueError(f"{name} must have shape {(n_images, *shape)}; got {values.shape}.")
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{name} contain NaN or infinite values.")
    return values


def _index_transform(shift, psi_degrees, mirror, centre):
    """``(matrix, offset)`` for ``ndimage.affine_transform``, in (row, column) index order."""
    psi = np.deg2rad(psi_degrees)
    cos, sin = np.cos(psi), np.sin(psi)
    euler = np.array([[cos, sin], [-sin, cos]])
    if mirror:
        euler = euler @ np.diag([-1.0, 1.0])
    # (x, y) -> (row, column) order: swap both axes of the matrix and the shift.
    matrix = euler[::-1, ::-1]
    offset = centre - matrix @ centre - shift[::-1]
    return matrix, offset


def _alignment_parameters(n_images, shifts, psi, mirror):
    """Checked per-image ``(shifts, psi, mirror)``."""
    shifts = _per_image(shifts, n_images, (2,), "shifts")
    psi = _per_image(psi, n_images, (), "psi")
    mirror = np.zeros(n_images, dtype=bool) if mirror is None else np.asarray(mirror)
    if mirror.shape != (n_images,):
        raise ValueError(f"mirror must have shape ({n_images},); got {mirror.shape}.")
    # Any non-empty string, "False" too, is true as a bool: only booleans and 0/1 numbers say which.
    is_number = np.issubdtype(mirror.dtype, np.number) and not np.issubdtype(mirror.dtype, np.complexfloating)
    if mirror.dtype != bool and not (is_number and np.all((mirror == 0) | (mirror == 1))):
        raise ValueError(f"mirror must be booleans (or 0 and 1), one per image; got {mirror.dtype} values.")
    return shifts, psi, mirror.astype(bool)


# Blocks of at most this many images, so that a progress report comes every few seconds.
_MAX_BLOCK_IMAGES = 1000


def _align_block(images, rows, shifts, psi, mirror, out):
    """Align the images ``rows`` into ``out``; returns how many."""
    centre = np.array(images.shape[1:], dtype=np.float64) // 2
    for index in range(rows.start, rows.stop):
        if not shifts[index].any() and psi[index] % 360 == 0 and not mirror[index]:
            if out is not images:
                out[index] = images[index]
            continue
        matrix, offset = _index_transform(shifts[index], psi[index], mirror[index], centre)
        out[index] = ndimage.affine_transform(
            images[index].astype(np.float64),
            matrix,
            offset=offset,
            order=3,
            mode="grid-wrap",
        )
    return rows.stop - rows.start


def _align_into(images, shifts, psi, mirror, out, n_jobs=None, progress=None):
    """Write the aligned ``images`` into ``out``, which may be ``images`` itself (in place).

    Parameters are checked by the caller (:func:`_alignment_parameters`). Each
    image is read whole before its own slot of ``out`` is written, so aligning
    in place is exact. Blocks of images run on ``n_jobs`` threads (joblib's
    convention): SciPy's resampling releases the GIL. ``progress(n)``, if given,
    is called as each block of ``n`` images is done.
    """
    n_images = len(images)
    n_blocks = max(1, min(n_images, max(4 * effective_n_jobs(n_jobs), -(-n_images // _MAX_BLOCK_IMAGES))))
    bounds = np.linspace(0, n_images, n_blocks + 1).astype(int)
    blocks = [slice(start, stop) for start, stop in pairwise(bounds) if stop > start]
    # Threads whatever joblib backend is configured: processes would write into copies of ``out``.
    done = Parallel(n_jobs=n_jobs, require="sharedmem", return_as="generator_unordered")(
        delayed(_align_block)(images, rows, shifts, psi, mirror, out) for rows in blocks
    )
    for n_done in done:
        if progress is not None:
            progress(n_done)
    return out


def apply_alignment(images, shifts, psi, mirror=None, *, n_jobs=None):
    """Bring particle images to the common frame: centred, in-plane angle 0.

    Parameters
    ----------
    images : array-like of shape (n_images, height, width)
    shifts : array-like of shape (n_images, 2)
        Origin offsets in pixels, x then y, with the meaning of RELION's
        ``rlnOriginX``/``rlnOriginY`` (``rlnOriginXAngst`` / pixel size).
    psi : array-like of shape (n_images,)
        In-plane angle in degrees, with the meaning of ``rlnAnglePsi``.
    mirror : array-like of bool of shape (n_images,), default=None
        Images of the mirrored particle (Xmipp's ``flip``).
    n_jobs : int, default=None
        Threads resampling the images (joblib's convention: None is 1 unless in
        a ``joblib.parallel_config`` context, -1 is all processors). The result
        does not depend on it.

    Returns
    -------
    aligned : ndarray of shape (n_images, height, width)
        float32 for float32 input, else float64. The input is not modified.
    """
    images = _check_images(images)
    shifts, psi, mirror = _alignment_parameters(images.shape[0], shifts, psi, mirror)
    dtype = np.float32 if images.dtype == np.float32 else np.float64
    return _align_into(images, shifts, psi, mirror, np.empty(images.shape, dtype=dtype), n_jobs)
