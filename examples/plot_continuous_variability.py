"""
Continuous variability: the closed -> open path of adenylate kinase
===================================================================

Particles are drawn all along the closed -> open transition path of AdK (a
continuous conformational change). A self-organizing map lays such data out as
a gradient: colouring every class by the mean path coordinate of its
particles shows the path running across the map, and the class averages
change gradually from closed to open.

Set ``KERDENSOM_EXAMPLES_SMALL=1`` for a quick run.
"""

import os

import matplotlib.pyplot as plt
import numpy as np
from sklearn.pipeline import make_pipeline

from sklearn_kerdensom import ClassAverager, KerDenSOM, MaskVectorizer, circular_mask, topographic_error
from sklearn_kerdensom.averaging import mean_per_class
from sklearn_kerdensom.datasets import load_demo
from sklearn_kerdensom.plotting import plot_map, plot_node_values

small = os.environ.get("KERDENSOM_EXAMPLES_SMALL") == "1"
data = load_demo(300 if small else 1500, random_state=0)
size = data.images.shape[1]
mask = circular_mask((size, size), data.mask_radius)

averager = ClassAverager(
    make_pipeline(MaskVectorizer(mask), KerDenSOM(n_columns=6, n_rows=6, random_state=0))
).fit(data.images)
som = averager.estimator_[-1]
vectors = averager.estimator_[0].transform(data.images)
print(f"topographic error: {topographic_error(som, vectors):.3f}")

# %%
# Mean path coordinate (0 = closed, 1 = open) of the particles of each class.
path_by_class = mean_per_class(data.path_coordinate, averager.labels_, som.n_nodes)
for row in path_by_class.reshape(som.n_rows, som.n_columns):
    print(" ".join("  -  " if np.isnan(value) else f"{value:5.2f}" for value in row))

fig, (left, right) = plt.subplots(1, 2, figsize=(11, 5))
plot_node_values(path_by_class, som.node_positions_, ax=left, cmap="coolwarm", label="path coordinate")
left.set_title("mean path coordinate per class (0 closed, 1 open)")
plot_map(averager.averages_, averager.node_positions_, counts=averager.counts_, ax=right)
right.set_title("class averages")
plt.show()
