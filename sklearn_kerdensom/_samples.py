"""Where the samples live, and how a pass runs over them.

A pass is a function of one chunk of samples (in internal coordinates, in the
compute dtype) and of its per-sample distance terms. It either returns
node-sized statistics that add up over chunks (:meth:`reduce`), or one row of
results per sample (:meth:`map_rows`).

* :class:`ChunkedSamples`: a NumPy array or a memory map (``np.memmap``,
  ``mrcfile.mmap(...).data``), read chunk by chunk, so memory stays bounded by
  the chunk size whatever the number of samples.
* :class:`DaskSamples`: a ``dask.array`` chunked along samples. Every pass is
  one Dask task per block, and only node-sized statistics travel back, so with
  a ``dask.distributed`` client the work runs on the cluster's workers.
* :class:`DeviceSamples`: an array of another Array API namespace (CuPy,
  PyTorch, ...), on its device. Chunks, their terms and the code vectors of a
  pass stay there; only node-sized statistics come back to the host.
"""

import math
import tempfile
import warnings
from functools import partial, reduce
from itertools import pairwise

import numpy as np

from ._array_api import (
    chunk_budget,
    device_of,
    fields_to_numpy,
    is_numpy_array,
    namespace,
    numpy_dtype,
    row_dots,
    to_device,
    to_numpy,
)
from ._blas import map_in_threads, single_threaded_blas
from ._chunks import device_sample_chunks, sample_chunks
from ._passes import PreparedCenters, e_step


def is_dask_array(X):
    """Whether ``X`` is a Dask array (without importing Dask)."""
    return hasattr(X, "__dask_graph__") and hasattr(X, "chunks") and hasattr(X, "to_delayed")


def chunk_terms(chunk, centre):
    """Per-sample float64 terms of the distance expansion: ``|x|^2`` and ``x.m``, shape (n_rows, 2)."""
    xp = namespace(chunk)
    wide = xp.astype(chunk, xp.float64, copy=False)
    return xp.stack([row_dots(wide, wide), wide @ centre], axis=1)


def _apply(function, raw_rows, frame, dtype, terms=None, extra=None):
    """``function(chunk, terms[, extra])`` on raw rows mapped to internal coordinates.

    ``frame=None`` passes the raw rows, without terms: for the passes that fit the frame itself.
    """
    if frame is None:
        # Arrays of other namespaces stay where they are.
        rows = np.asarray(raw_rows) if isinstance(raw_rows, np.ndarray) else raw_rows
        return function(rows, None) if extra is None else function(rows, None, extra)
    chunk = frame.to_internal(raw_rows, dtype)
    if terms is None:
        terms = chunk_terms(chunk, frame.centre)
    return function(chunk, terms) if extra is None else function(chunk, terms, extra)


def _apply_checked(function, raw_rows, frame, dtype, terms=None, extra=None):
    """:func:`_apply` on rows of lazy data, whose values nothing checked before they were read."""
    return _apply(function, checked_finite(raw_rows), frame, dtype, terms, extra)


def _declared_rows(apply, n_rows, function, raw_rows, *args, block_info=None, **kwargs):
    """``apply(function, raw_rows, ...)`` on a Dask block that must hold ``n_rows`` rows (for
    ``map_blocks``, ``block_info`` gives them).

    A block computed from a source that changed since the array was made (a stack rewritten shorter
    after :func:`sklearn_kerdensom.io.dask_stack`) can hold fewer rows than its chunk says, and the
    pass would fit those silently.
    """
    if block_info is not None:
        start, stop = block_info[0]["array-location"][0]
        n_rows = stop - start
    if n_rows is not None and raw_rows.shape[0] != n_rows:
        raise ValueError(
            f"a block of the Dask array holds {raw_rows.shape[0]} rows where its chunks say {n_rows}: its "
            "source changed since the array was made (e.g. a stack rewritten after dask_stack)."
        )
    return apply(function, raw_rows, *args, **kwargs)


def total_of(parts):
    """The sum of ``parts`` (the statistics of chunks), added in their order."""
    return reduce(lambda total, part: total + part, parts)


class ChunkedSamples:
    """Samples in an array or memory map, with their internal frame and compute dtype.

    Parameters
    ----------
    X : ndarray or memmap of shape (n_samples, n_features)
    frame : Frame or None
        None: passes see the raw rows (and no terms).
    dtype : dtype
        Compute dtype of the chunks.
    n_nodes : int
        Sizes the chunks (see :func:`._chunks.sample_chunks`).
    n_threads : int
        Threads that run the chunks of a pass (:func:`._blas.map_in_threads`); the caller limits BLAS
        to one thread each.
    """

    def __init__(self, X, frame, dtype, n_nodes, n_threads=1):
        self.X = X
        self.frame = frame
        self.dtype = np.dtype(dtype)
        self.n_nodes = n_nodes
        self.n_threads = n_threads
        self.terms = None

    @property
    def shape(self):
        return self.X.shape

    @property
    def n_features(self):
        """The dimension of the samples' space, which normalises the kernel (see :mod:`._subspace`)."""
        return self.shape[1]

    def _copies_rows(self):
        """Whether a pass works on a float64 copy of each chunk: raw rows (the frame's own passes),
        rows converted to internal coordinates or the compute dtype, or terms computed per chunk."""
        if self.frame is None or self.terms is None or not self.frame.is_identity:
            return True
        return numpy_dtype(self.X.dtype) != self.dtype

    def _slices(self):
        return sample_chunks(self.shape[0], self.shape[1], self.n_nodes, self._copies_rows())

    def cache_terms(self):
        """Compute the per-sample distance terms once, for the many passes of a fit."""
        self.terms = self.map_rows(lambda chunk, terms: terms, 2)
        return self

    def reduce(self, function, per_sample=None):
        """Sum of ``function(chunk, terms[, per_sample rows])`` over all chunks.

        ``per_sample`` is an optional array of shape (n_samples, ...) whose rows
        go with their chunk.
        """

        def chunk_result(rows):
            return _apply(
                function,
                self.X[rows],
                self.frame,
                self.dtype,
                None if self.terms is None else self.terms[rows],
                None if per_sample is None else per_sample[rows],
            )

        return total_of(map_in_threads(chunk_result, self._slices(), self.n_threads))

    def map_rows(self, function, n_outputs=None):
        """``function(chunk, terms)`` of every chunk, stacked: float64 of shape (n_samples[, n_outputs])."""
        shape = (self.shape[0],) if n_outputs is None else (self.shape[0], n_outputs)
        result = np.empty(shape)

        def fill_chunk(rows):
            terms = None if self.terms is None else self.terms[rows]
            result[rows] = _apply(function, self.X[rows], self.frame, self.dtype, terms)

        for _ in map_in_threads(fill_chunk, self._slices(), self.n_threads):
            pass
        return result

    def take(self, indices):
        """Raw rows ``indices`` (sorted) as a NumPy array."""
        return np.asarray(self.X[indices])

    def prepared_centers(self, centers):
        """Code vectors (float64, internal coordinates) ready for the passes (:class:`PreparedCenters`)."""
        return PreparedCenters.of(centers, self.frame.centre, self.dtype)

    def fit_coordinates(self, code_vectors):
        """Code vectors as a fit on these samples iterates them: as they are (see
        :class:`._subspace.ResidualSamples`, whose fits iterate more)."""
        return code_vectors

    def e_step(self, centers, variance, kernel, df, storage_dtype):
        """The E-step pass of a fit at the code vectors ``centers`` (:func:`._passes.e_step`)."""
        return e_step(self, centers, variance, kernel, df, storage_dtype)

    def to_numpy(self, rows):
        """Results of :meth:`map_rows` as a NumPy array (a Dask array is computed)."""
        return np.asarray(rows)


# Partial sums of this many blocks per task: no task gathers the node-sized statistics of every
# block (1.6 MB each for a 7 x 7 map of 64 x 64 images), and the additions run on the workers.
SPLIT_EVERY = 8


def _tree_sum(parts):
    """One Delayed that adds up ``parts`` (Delayed values) in a tree of :data:`SPLIT_EVERY`-way sums."""
    import dask

    while len(parts) > 1:
        parts = [
            dask.delayed(total_of)(parts[start : start + SPLIT_EVERY])
            for start in range(0, len(parts), SPLIT_EVERY)
        ]
    return parts[0]


def _compute(value, n_blocks):
    """``value.compute()`` for a pass over ``n_blocks`` blocks.

    On several of Dask's local threads, with at least two blocks per thread, BLAS runs on one thread
    (process-wide, while the pass runs): those threads already run the blocks in parallel, and BLAS's
    own threads on top of them oversubscribe the cores (a pass took 1.4x as long on 2 cores,
    measured). With fewer blocks the last round may leave cores idle, so the limit is not applied;
    on 2 cores, 3 blocks took 1.3-1.5x the in-memory pass with or without it (measured).
    """
    import dask
    import dask.threaded
    from dask.system import CPU_COUNT

    threads = dask.config.get("num_workers", None) or CPU_COUNT
    local_threads = dask.base.get_scheduler(collections=[value]) is dask.threaded.get
    if local_threads and threads > 1 and n_blocks >= 2 * threads:
        with single_threaded_blas():
            return value.compute()
    return value.compute()


class DaskSamples(ChunkedSamples):
    """Samples in a Dask array chunked along samples; every pass is one task per block.

    Blocks are checked for NaN and infinities as each pass reads them (no pass reads the whole array
    before the fit starts), until a pass has read them all: then ``values_checked`` skips the check.
    """

    def __init__(self, X, frame, dtype, n_nodes, values_checked=False):
        super().__init__(X, frame, dtype, n_nodes)
        self.values_checked = values_checked

    def _applier(self):
        return _apply if self.values_checked else _apply_checked

    def _blocks(self):
        return self.X.to_delayed().ravel()

    def _row_slices(self):
        bounds = np.cumsum((0, *self.X.chunks[0]))
        return [slice(start, stop) for start, stop in pairwise(bounds)]

    def cache_terms(self):
        self.terms = self.map_rows(lambda chunk, terms: terms, 2).persist()
        return self

    def reduce(self, function, per_sample=None):
        import dask

        terms = [None] * len(self._row_slices()) if self.terms is None else self.terms.to_delayed().ravel()
        extras = [None if per_sample is None else per_sample[rows] for rows in self._row_slices()]
        parts = [
            dask.delayed(_declared_rows)(
                self._applier(),
                rows.stop - rows.start,
                function,
                block,
                self.frame,
                self.dtype,
                block_terms,
                extra,
            )
            for block, block_terms, extra, rows in zip(
                self._blocks(), terms, extras, self._row_slices(), strict=True
            )
        ]
        return _compute(_tree_sum(parts), len(parts))

    def map_rows(self, function, n_outputs=None):
        """A lazy Dask array of ``function(chunk, terms)`` rows, chunked like the samples."""
        apply = partial(_declared_rows, self._applier(), None, function, frame=self.frame, dtype=self.dtype)

        if n_outputs is None:
            return self.X.map_blocks(apply, drop_axis=1, dtype=np.float64)
        return self.X.map_blocks(apply, chunks=(self.X.chunks[0], (n_outputs,)), dtype=np.float64)

    def take(self, indices):
        return np.asarray(self.X[indices].compute())


class DeviceSamples(ChunkedSamples):
    """Samples in an array of another Array API namespace, on its device (e.g. a GPU).

    A pass runs its chunks one after the other (the device runs each chunk's products in parallel),
    as many rows at a time as a quarter of the device's free memory holds (host rules for arrays in
    host memory: :func:`._chunks.sample_chunks`). Each chunk's node-sized statistics come back to the
    host, so a pass over a million images transfers a few megabytes; :meth:`map_rows` keeps its rows
    on the device.
    """

    def __init__(self, X, frame, dtype, n_nodes):
        super().__init__(X, frame, dtype, n_nodes)
        self.xp = namespace(X)
        self.device = device_of(X)
        self.device_frame = None if frame is None else frame.on_device(self.xp, self.device)
        # Taken once: the same chunks in every pass, whatever else comes and goes on the device, so
        # that the float32 sums of a fit do not depend on when its passes ran.
        self.budget = chunk_budget(self.xp, self.device)

    def _slices(self):
        if self.budget is None:
            return super()._slices()
        return device_sample_chunks(self.shape[0], self.shape[1], self.n_nodes, self.budget)

    def _chunk_result(self, function, rows, per_sample=None):
        return _apply(
            function,
            self.X[rows, ...],
            self.device_frame,
            self.dtype,
            None if self.terms is None else self.terms[rows, ...],
            None if per_sample is None else to_device(per_sample[rows], self.xp, self.device),
        )

    def reduce(self, function, per_sample=None):
        chunk_results = (self._chunk_result(function, rows, per_sample) for rows in self._slices())
        return total_of(fields_to_numpy(result) for result in chunk_results)

    def map_rows(self, function, n_outputs=None):
        """``function(chunk, terms)`` of every chunk, stacked on the device: float64 of shape
        (n_samples[, n_outputs])."""
        shape = (self.shape[0],) if n_outputs is None else (self.shape[0], n_outputs)
        result = self.xp.empty(shape, dtype=self.xp.float64, device=self.device)
        for rows in self._slices():
            result[rows, ...] = self._chunk_result(function, rows)
        return result

    def take(self, indices):
        rows = self.xp.asarray(np.asarray(indices), device=self.device)
        return to_numpy(self.xp.take(self.X, rows, axis=0))

    def prepared_centers(self, centers):
        return super().prepared_centers(centers).on_device(self.xp, self.device)

    def to_numpy(self, rows):
        return to_numpy(rows)


def warn_if_memory_map_is_copied(X, name="X"):
    """A UserWarning when the float32/float64 conversion of validation will copy a memory map whole into
    memory: the passes read memory maps of those types chunk by chunk, but an int16 or float16 stack
    becomes a float64 array in memory first (4 or 8 times its size on disk)."""
    if isinstance(X, np.memmap) and X.dtype not in (np.float32, np.float64):
        size_mb = X.size * 8 / 2**20
        warnings.warn(
            f"{name} is a memory map of {X.dtype}: it is converted to a float64 array in memory first "
            f"({size_mb:.0f} MB), not read chunk by chunk; write the stack as float32 to work out of core.",
            UserWarning,
            stacklevel=3,
        )


def float_dask_array(X, name="X"):
    """A Dask array of real numbers as float32 or float64 (other real types become float64), with known
    chunk sizes along its first axis; a ValueError otherwise (complex values would lose their imaginary
    part in the cast, as NumPy input is refused for them)."""
    if any(math.isnan(size) for size in X.chunks[0]):
        raise ValueError(
            f"the Dask array {name} has unknown chunk sizes (e.g. after boolean indexing); call "
            f"{name}.compute_chunk_sizes() first."
        )
    if X.dtype in (np.float32, np.float64):
        return X
    if not np.issubdtype(X.dtype, np.number) or np.issubdtype(X.dtype, np.complexfloating):
        raise ValueError(f"the Dask array {name} holds {X.dtype} values; expected real numbers.")
    return X.astype(np.float64)


def check_dask_samples(X):
    """A Dask array of samples checked for what the passes need: 2-D, chunked along samples only,
    float32 or float64 (other real types become float64). NaN and infinities are found by the
    passes themselves (:class:`DaskSamples`), since checking them here would read the data once more."""
    if X.ndim != 2:
        raise ValueError(f"Expected a 2-dimensional Dask array of samples; got shape {X.shape}.")
    if len(X.chunks[1]) != 1:
        raise ValueError(
            f"the Dask array is chunked along features ({len(X.chunks[1])} chunks of columns); chunk it "
            "along samples only, e.g. X.rechunk({1: -1})."
        )
    X = float_dask_array(X)
    if X.shape[0] < 1:
        raise ValueError("Found array with 0 sample(s) while a minimum of 1 is required.")
    return X


def checked_finite(rows):
    """``rows`` as an array, or a ValueError if they hold NaN or infinities."""
    rows = np.asarray(rows)
    if not np.all(np.isfinite(rows)):
        raise ValueError("Input X contains NaN or infinity.")
    return rows


def temporary_memmap(shape, dtype, prefix, directory=None):
    """An uninitialised memory map of a temporary file in ``directory`` (None: :func:`tempfile.gettempdir`).

    The file is unlinked at once and its descriptor closed (the map holds its own): it is deleted when
    the array is.
    """
    with tempfile.TemporaryFile(prefix=prefix, dir=directory) as scratch:
        return np.memmap(scratch, dtype=dtype, mode="w+", shape=shape)


def samples_of(X, frame, dtype, n_nodes, values_checked=False, n_threads=1):
    """The right :class:`ChunkedSamples` for ``X``.

    ``values_checked``: an earlier pass has read every value of ``X`` and found them finite, so the
    passes of a Dask array need not check them again (a Dask array gives the same values each time it
    is computed, unless its graph reads something that changes meanwhile). NumPy arrays and memory
    maps are checked once, by ``validate_data``, before any pass.
    """
    if is_dask_array(X):
        return DaskSamples(X, frame, dtype, n_nodes, values_checked)
    if not is_numpy_array(X):
        return DeviceSamples(X, frame, dtype, n_nodes)
    return ChunkedSamples(X, frame, dtype, n_nodes, n_threads)
