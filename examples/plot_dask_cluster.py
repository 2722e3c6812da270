"""
Fitting on a Dask cluster
=========================

When a stack outgrows one machine, the same ``fit`` runs on a Dask cluster: give
KerDenSOM (or the whole pipeline, or :class:`~sklearn_kerdensom.ClassAverager`)
a ``dask.array`` chunked along images. Every inner iteration computes the
per-block statistics (membership sums, weighted sums of the images, squared
distances, log-likelihood) as Dask tasks on the workers; only node-sized
arrays travel back. Here a :class:`~dask.distributed.LocalCluster` stands in
for a real one (``Client("scheduler-address:8786")``); with MRC stacks on a
shared file system, :func:`sklearn_kerdensom.io.dask_stack` reads each block in
its own task.

Set ``KERDENSOM_EXAMPLES_SMALL=1`` for a quick run.
"""

import os

import dask.array as da
import numpy as np
from dask.distributed import Client, LocalCluster
from sklearn.pipeline import make_pipeline

from sklearn_kerdensom import ClassAverager, KerDenSOM, MaskVectorizer, circular_mask
from sklearn_kerdensom.datasets import load_demo

small = os.environ.get("KERDENSOM_EXAMPLES_SMALL") == "1"

if __name__ == "__main__":
    data = load_demo(300 if small else 4000, random_state=0)
    # float64, so that the fit is the same wherever it runs (see the end); float32 works as well.
    images_in_memory = data.images.astype(np.float64)
    size = images_in_memory.shape[1]

    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster, Client(cluster):
        # Images chunked along the image axis only; persist() puts the blocks on the workers.
        images = da.from_array(images_in_memory, chunks=(100 if small else 1000, size, size)).persist()
        averager = ClassAverager(
            make_pipeline(
                MaskVectorizer(circular_mask((size, size), data.mask_radius)),
                KerDenSOM(n_columns=5, n_rows=5, random_state=0),
            )
        ).fit(images)
        held_out = da.from_array(load_demo(200, random_state=1).images, chunks=(100, size, size))
        print("held-out mean log-likelihood:", averager.score(held_out))

    som = averager.estimator_[-1]
    print(f"{som.n_iter_} iterations; class sizes:")
    print(averager.counts_.reshape(som.n_rows, som.n_columns))
    # The same fit in memory. (With float32 images the products run in float32, whose rounding depends
    # on how the rows are chunked; a fit that is sensitive to rounding can then end elsewhere.)
    in_memory = ClassAverager(averager.estimator).fit(images_in_memory)
    agreement = np.mean(in_memory.labels_ == averager.labels_)
    print(f"labels equal to the in-memory fit's for {100 * agreement:.1f} % of the images")
