"""Arrays of other Array API namespaces (CuPy, PyTorch, ...): their namespace, device and way home.

scikit-learn's convention (``sklearn.set_config(array_api_dispatch=True)``): inputs stay in their
namespace and on their device, fitted attributes live there too, and results come back in the input's
namespace. The passes (:mod:`._passes`) are written against the Array API standard and run on the
device chunk by chunk; the node-sized statistics they add up come back to the host, where the
node-sized linear algebra of an iteration runs in NumPy float64 (a few milliseconds against a pass).

NumPy arrays get :mod:`numpy` itself as their namespace, not a wrapper, so that the CPU path runs the
same NumPy calls, with the same results and speed, as before the Array API support.
"""

from dataclasses import fields, is_dataclass, replace

import array_api_compat
import numpy as np

# A pass's chunks on a device take at most this fraction of its free memory: the rest is the data,
# the code vectors and whatever else shares the device.
_DEVICE_MEMORY_FRACTION = 0.25


def is_numpy_array(X):
    """Whether ``X`` is a NumPy array (memory maps included)."""
    return isinstance(X, np.ndarray)


def is_numpy_or_dask(X):
    """Whether ``X`` is a NumPy array or a Dask array (of NumPy blocks): what the host paths take."""
    return isinstance(X, np.ndarray) or array_api_compat.is_dask_array(X)


def namespace(array):
    """The Array API namespace of ``array``: :mod:`numpy` for NumPy arrays, array-api-compat's otherwise."""
    if isinstance(array, np.ndarray | np.generic):
        return np
    return array_api_compat.array_namespace(array)


def device_of(array):
    """The device ``array`` lives on."""
    return array_api_compat.device(array)


def dtype_in(xp, dtype):
    """The dtype of namespace ``xp`` with the name of the NumPy ``dtype`` (e.g. ``xp.float32``)."""
    return getattr(xp, np.dtype(dtype).name)


def numpy_dtype(dtype):
    """The NumPy dtype of the same name as an Array API ``dtype`` (``torch.float32``: ``float32``)."""
    if isinstance(dtype, np.dtype | type):
        return np.dtype(dtype)
    return np.dtype(str(dtype).rsplit(".", 1)[-1])


def to_numpy(array):
    """``array`` as a NumPy array on the host (NumPy arrays as they are, lists and scalars converted)."""
    if isinstance(array, np.ndarray):
        return array
    if not array_api_compat.is_array_api_obj(array):
        return np.asarray(array)
    if array_api_compat.is_torch_array(array):
        return array.detach().cpu().numpy()
    if array_api_compat.is_cupy_array(array):
        return array.get()
    if array_api_compat.is_array_api_strict_namespace(namespace(array)):
        import array_api_strict

        return np.asarray(array_api_strict.asarray(array, device=array_api_strict.Device("CPU_DEVICE")))
    return np.asarray(array)


def host_array(X):
    """NumPy and Dask arrays as they are (memory maps and lazy arrays stay so); others copied to NumPy."""
    return X if is_numpy_or_dask(X) else to_numpy(X)


def on_host(estimator):
    """A fitted estimator whose arrays are on the host: itself when they are, or a copy whose array
    attributes, nested estimators' included, were copied to NumPy arrays (plots, reports and files are
    host code)."""
    arrays = [value for value in vars(estimator).values() if array_api_compat.is_array_api_obj(value)]
    if all(is_numpy_or_dask(array) for array in arrays):
        return estimator
    from sklearn.utils._array_api import _estimator_with_converted_arrays

    return _estimator_with_converted_arrays(estimator, to_numpy)


def to_device(array, xp, device):
    """A host (NumPy) array in namespace ``xp`` on ``device``; None stays None."""
    if array is None:
        return None
    return xp.asarray(np.ascontiguousarray(array), device=device)


def times_power_of_two(values, exponent):
    """``values * 2**exponent``, exact: arrays are scaled in place (pass a copy of one you keep),
    scalars returned.

    NumPy's through ``np.ldexp``. The Array API has no ldexp: two multiplications by powers of two, each
    exact, since one factor can exceed a float's range where the result does not (``2.0**1030``).
    """
    if isinstance(values, np.ndarray):
        return np.ldexp(values, exponent, out=values)
    if not array_api_compat.is_array_api_obj(values):
        return np.ldexp(values, exponent)
    half = exponent // 2
    values *= 2.0**half
    values *= 2.0 ** (exponent - half)
    return values


def row_dots(left, right):
    """``sum_j left[i, j] * right[i, j]`` for every row ``i`` (NumPy: one einsum, no temporary)."""
    if isinstance(left, np.ndarray):
        return np.einsum("ij,ij->i", left, right)
    return namespace(left).vecdot(left, right, axis=-1)


def total_of_products(left, right):
    """``sum_ij left[i, j] * right[i, j]`` as a Python float."""
    if isinstance(left, np.ndarray):
        return float(np.einsum("ij,ij->", left, right))
    return float(namespace(left).sum(left * right))


def free_device_memory(xp, device):
    """Bytes free on a GPU ``device`` (PyTorch CUDA or CuPy), or None for host memory and the unknown.

    Free for us: what the driver has not handed out, plus what the library's allocator holds unused.
    """
    if array_api_compat.is_torch_namespace(xp) and getattr(device, "type", None) == "cuda":
        import torch

        cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        return int(torch.cuda.mem_get_info(device)[0] + cached)
    if array_api_compat.is_cupy_namespace(xp):
        import cupy

        with cupy.cuda.Device(getattr(device, "id", 0)):
            cached = cupy.get_default_memory_pool().free_bytes()
            return int(cupy.cuda.runtime.memGetInfo()[0] + cached)
    return None


def chunk_budget(xp, device):
    """Bytes a pass's chunks may take on ``device``, or None where host rules apply."""
    free = free_device_memory(xp, device)
    return None if free is None else int(_DEVICE_MEMORY_FRACTION * free)


def fields_to_numpy(value):
    """A pass's result on the host: an array, or a dataclass of arrays and numbers (e.g. statistics)."""
    if is_dataclass(value):
        return replace(
            value,
            **{
                field.name: to_numpy(getattr(value, field.name))
                for field in fields(value)
                if not isinstance(getattr(value, field.name), int | float)
            },
        )
    return to_numpy(value)


def astype(values, dtype):
    """``values`` (NumPy, Dask or another namespace's array) converted to the NumPy ``dtype``'s kind."""
    if is_numpy_or_dask(values):
        return values.astype(dtype)
    xp = namespace(values)
    return xp.astype(values, dtype_in(xp, dtype))


def mean_of(values):
    """The mean of ``values`` (NumPy, Dask or another namespace's array) as a Python float."""
    if is_numpy_or_dask(values):
        return float(np.asarray(values.mean()))
    return float(namespace(values).mean(values))


def like(array, reference):
    """A host (NumPy) ``array`` in the namespace and on the device of ``reference``, of any kind."""
    if is_numpy_or_dask(reference):
        return array
    return to_device(array, namespace(reference), device_of(reference))
