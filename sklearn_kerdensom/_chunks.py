"""Chunking over samples, so that memory stays O(chunk x (nodes + features))."""

from sklearn import get_config
from sklearn.utils import gen_batches

# Matrix products on a few hundred rows already run at the BLAS peak, and a
# bounded chunk keeps the working copies small however much working_memory allows.
MAX_CHUNK_ROWS = 2048
MAX_CHUNK_BYTES = 16 * 2**20


def chunk_rows(n_features, n_nodes, copies_rows=True):
    """Rows per chunk within scikit-learn's ``working_memory`` (MiB), :data:`MAX_CHUNK_BYTES` and
    :data:`MAX_CHUNK_ROWS`.

    A chunk holds a few float64 ``(rows, n_nodes)`` arrays (distances, log
    kernels, memberships, weights) and, when ``copies_rows``, a float64 working
    copy of its rows. Without that copy (a fit's passes over data already in
    the compute dtype) chunks are larger, and a pass pays its per-chunk costs
    (node-sized sums, small products) fewer times.
    """
    row_bytes = 8 * (4 * n_nodes + (n_features if copies_rows else 0))
    budget_rows = int(min(get_config()["working_memory"] * 2**20, MAX_CHUNK_BYTES) // row_bytes)
    return max(1, min(budget_rows, MAX_CHUNK_ROWS))


# A pass is split into at least this many chunks, of at least MIN_CHUNK_ROWS rows, so that the threads
# of a pass have chunks to share; the chunks do not depend on the number of threads, so neither do the
# sums of a pass nor the fitted map.
MIN_CHUNKS = 16
MIN_CHUNK_ROWS = 256


def sample_chunks(n_samples, n_features, n_nodes, copies_rows=True):
    """Slices over the samples: :func:`chunk_rows` at a time, or fewer to make :data:`MIN_CHUNKS`."""
    rows = chunk_rows(n_features, n_nodes, copies_rows)
    rows = min(rows, max(MIN_CHUNK_ROWS, -(-n_samples // MIN_CHUNKS)))
    return gen_batches(n_samples, rows)


def device_sample_chunks(n_samples, n_features, n_nodes, budget_bytes):
    """Slices over samples on a GPU, as many rows at a time as ``budget_bytes`` of device memory hold.

    A GPU runs a product at its peak only on many rows, and every chunk costs a transfer of node-sized
    statistics to the host, so its chunks are as large as its free memory allows rather than
    :data:`MAX_CHUNK_ROWS`. A row takes the same working arrays as on the host (:func:`chunk_rows`).
    """
    row_bytes = 8 * (4 * n_nodes + n_features)
    return gen_batches(n_samples, max(1, min(n_samples, budget_bytes // row_bytes)))
