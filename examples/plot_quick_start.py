"""
Quick start: a map of classes from particle images
==================================================

Simulated particles of three conformations of adenylate kinase (closed,
intermediate, open; CTF phase-flipped, SNR 0.1) go through the scientist's
whole path: a circular mask turns each image into a vector, KerDenSOM arranges
the vectors on a 7 x 7 map, and :class:`~sklearn_kerdensom.ClassAverager`
averages the full images of every class. Neighbouring classes look alike, and
the three conformations land in different regions of the map.

Set ``KERDENSOM_EXAMPLES_SMALL=1`` for a quick run on fewer, smaller images.
"""

import os

import matplotlib.pyplot as plt
import numpy as np
from sklearn.pipeline import make_pipeline

from sklearn_kerdensom import ClassAverager, KerDenSOM, MaskVectorizer, circular_mask
from sklearn_kerdensom.datasets import make_adk_states
from sklearn_kerdensom.plotting import plot_class_map

small = os.environ.get("KERDENSOM_EXAMPLES_SMALL") == "1"
data = make_adk_states(60 if small else 300, snr=0.1, binning=2 if small else 1, random_state=0)
size = data.images.shape[1]
print(f"{len(data.images)} particles of {size} x {size} px")

# %%
# Mask, map and averages in one estimator.
pipeline = make_pipeline(
    MaskVectorizer(circular_mask((size, size), 0.4 * size)),
    KerDenSOM(n_columns=7, n_rows=7, random_state=0),  # the defaults: bending, 1e4 -> 200
)
averager = ClassAverager(pipeline).fit(data.images)
som = averager.estimator_[-1]
print(f"fitted in {som.n_iter_} iterations; kernel width sigma = {som.sigma_:.4g}")

# %%
# Where did each conformation go? The mean map position of its particles.
positions = averager.node_positions_[averager.labels_]
for state, name in enumerate(data.state_names):
    x, y = positions[data.state == state].mean(axis=0)
    print(f"{name:>12}: column {x:.1f}, row {y:.1f}")

# %%
# The map of class averages (left) and code vectors (right), with class sizes.
fig, axes = plot_class_map(averager, kind="both")
print("non-empty classes:", np.count_nonzero(averager.counts_))
plt.show()
