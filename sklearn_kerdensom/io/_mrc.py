"""MRC stacks: header checks, read-only memory maps, lazy Dask arrays and written class stacks.

MRC files are read with ``mrcfile``; a header that does not describe the file's
data block is refused before the data is mapped.
"""

import math
import warnings
from pathlib import Path

import mrcfile
import numpy as np


def read_stack(path):
    """Memory-map the images of an MRC file, read only.

    Parameters
    ----------
    path : str or path-like
        An MRC stack (``.mrcs``; a 3-D file counts as a stack of 2-D images)
        or a 2-D MRC image.

    Returns
    -------
    images : numpy.memmap of shape (n_images, height, width)
        In the file's data type. Pixels are read from disk only when indexed;
        the array stays valid after this function returns.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"MRC file not found: {path}")
    images, _ = _map_stack(path)
    return images


def read_image_shape(path):
    """``(height, width)`` of the images of an MRC file, from its header alone (no pixel is read).

    Parameters
    ----------
    path : str or path-like
        An MRC stack or 2-D image.

    Returns
    -------
    shape : tuple of int
    """
    path = Path(path)
    problem = _mrc_header_problem(path)
    if problem is not None:
        raise ValueError(f"{path} is not a readable MRC file: {problem}.")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with mrcfile.mrcfile.MrcFile(path, mode="r", permissive=True, header_only=True) as mrc:
            return int(mrc.header.ny), int(mrc.header.nx)


def _mrc_header_problem(path):
    """Why the header of an MRC file does not describe its data block, or None when it does.

    mrcfile maps a data block of the wrong size anyway, with only a warning, as sheared or garbage
    images (or fails with an OverflowError on a negative size), so the sizes are checked here first.
    """
    with warnings.catch_warnings():
        # The headers of older writers warn here; whether they are usable is decided below.
        warnings.simplefilter("ignore", RuntimeWarning)
        try:
            with mrcfile.mrcfile.MrcFile(path, mode="r", permissive=True, header_only=True) as mrc:
                header = mrc.header
        except (ValueError, OverflowError) as error:
            return str(error)
    sizes = {"nx": int(header.nx), "ny": int(header.ny), "nz": int(header.nz)}
    if mrcfile.utils.spacegroup_is_volume_stack(header.ispg):
        sizes["mz"] = int(header.mz)
    described = ", ".join(f"{name}={size}" for name, size in sizes.items())
    if min(sizes.values()) < 1:
        return f"its header gives the sizes {described}; expected positive sizes"
    try:
        dtype = mrcfile.utils.data_dtype_from_header(header)
    except ValueError as error:
        return f"its header gives data mode {int(header.mode)}, which is not an MRC mode ({error})"
    extended = int(header.nsymbt)
    after_header = Path(path).stat().st_size - header.nbytes
    if after_header < extended:
        return (
            f"its header gives an extended header of {extended} bytes, but the file has {after_header} bytes "
            f"after its {header.nbytes}-byte header"
        )
    expected = math.prod(mrcfile.utils.data_shape_from_header(header)) * dtype.itemsize
    if after_header - extended != expected:
        return (
            f"its header ({described}, mode {int(header.mode)}: {dtype.name}, extended header {extended} "
            f"bytes) calls for {expected} bytes of data, but the file holds {after_header - extended}"
        )
    return None


def _open_mrc(path):
    """An open read-only memory-mapped MRC file, accepting the headers of older writers."""
    problem = _mrc_header_problem(path)
    if problem is not None:
        raise ValueError(f"{path} is not a readable MRC file: {problem}.")
    try:
        return mrcfile.mmap(path, mode="r")
    except ValueError as strict_error:
        # Pre-MRC2014 writers often leave out the "MAP " ID or the machine stamp, which strict mrcfile
        # rejects; such a file is still usable when its data block can be mapped.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                mrc = mrcfile.mmap(path, mode="r", permissive=True)
            except ValueError as error:
                raise ValueError(f"{path} is not a readable MRC file: {error}") from strict_error
        if mrc.data is None:
            mrc.close()
            problems = "; ".join(str(w.message) for w in caught) or str(strict_error)
            raise ValueError(f"{path} is not a readable MRC file: {problems}") from strict_error
        return mrc


def _map_stack(path):
    """``(images, voxel_size)``: images (n, h, w) memory-mapped; voxel size x in Å (0 when unset)."""
    with _open_mrc(path) as mrc:
        images = mrc.data
        voxel_size = float(mrc.voxel_size.x)
    if images.ndim == 2:
        images = images[np.newaxis]
    if images.ndim != 3:
        raise ValueError(
            f"{path} holds {images.ndim}-D data of shape {images.shape}; expected a 2-D image or a stack "
            "of 2-D images."
        )
    if not (np.issubdtype(images.dtype, np.integer) or np.issubdtype(images.dtype, np.floating)):
        raise ValueError(f"{path} holds {images.dtype} data; expected real-valued images.")
    return images, voxel_size


def _write_stack(path, images, pixel_size):
    with mrcfile.new(path, overwrite=True) as mrc:
        mrc.set_data(np.array(images, dtype=np.float32, order="C"))
        # ispg = 0 marks a stack of 2-D images (RELION's .mrcs), not a volume.
        mrc.set_image_stack()
        if pixel_size is not None:
            mrc.voxel_size = pixel_size


def _read_rows(path, start, stop):
    with _open_mrc(path) as mrc:
        data = mrc.data if mrc.data.ndim == 3 else mrc.data[np.newaxis]
        return np.array(data[start:stop], dtype=np.float32)


def dask_stack(path, *, images_per_chunk=1000):
    """An MRC stack as a lazy Dask array chunked along images.

    Each chunk is read by its own task, which opens the file memory-mapped and
    reads just its images, so the array can be handed to a ``dask.distributed``
    cluster whose workers see the same file system.

    Parameters
    ----------
    path : str or path-like
        An MRC stack (``.mrcs``) or 2-D image.
    images_per_chunk : int, default=1000

    Returns
    -------
    images : dask.array.Array of shape (n_images, height, width), float32
    """
    import dask
    import dask.array as da

    path = Path(path).resolve()
    if not path.is_file():
        raise FileNotFoundError(f"MRC file not found: {path}")
    if images_per_chunk < 1:
        raise ValueError(f"images_per_chunk must be >= 1; got {images_per_chunk}.")
    shape = read_stack(path).shape
    blocks = [
        da.from_delayed(
            dask.delayed(_read_rows)(path, start, min(start + images_per_chunk, shape[0])),
            shape=(min(start + images_per_chunk, shape[0]) - start, *shape[1:]),
            dtype=np.float32,
        )
        for start in range(0, shape[0], images_per_chunk)
    ]
    return da.concatenate(blocks, axis=0)
