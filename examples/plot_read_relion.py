"""
Classifying particles from RELION files
=======================================

:func:`sklearn_kerdensom.io.load_particles` reads a RELION STAR file (3.0, or
3.1+ with an optics block) and the MRC stacks it names, memory-mapped, and
applies the 2-D alignment (``rlnOriginX/YAngst``, ``rlnAnglePsi``). Paths that
have moved are found again through ``image_root``. The classification is
written back as MRC stacks and STAR files that RELION and Scipion read.

Run it on your own data with ``python plot_read_relion.py particles.star``; by
default it uses the small RELION 3.1 set shipped with the tests.
"""

import sys
import tempfile
from pathlib import Path

from sklearn.pipeline import make_pipeline

from sklearn_kerdensom import ClassAverager, KerDenSOM, MaskVectorizer, circular_mask
from sklearn_kerdensom.io import load_particles, write_class_averager

default = Path(__file__).resolve().parent.parent / "tests" / "data" / "particles" / "relion31.star"
star = Path(sys.argv[1]) if len(sys.argv) > 1 else default

particles = load_particles(star, image_root=star.parent)
print(f"{len(particles.images)} particles of {particles.images.shape[1:]} px at {particles.pixel_size} Å/px")
print(particles.metadata[["rlnImageName", "rlnAnglePsi", "rlnOriginXAngst", "rlnOriginYAngst"]].head())

# %%
# A small map for a small set; use 7 x 7 (the default) for real data.
size = particles.images.shape[1]
pipeline = make_pipeline(
    MaskVectorizer(circular_mask((size, size), 0.4 * size)),
    KerDenSOM(n_columns=2, n_rows=1, random_state=0),
)
averager = ClassAverager(pipeline).fit(particles.images)
print("class sizes:", averager.counts_)

# %%
# Class averages, representatives, particles with their class, and the classes.
out = Path(tempfile.mkdtemp()) / "kerdensom"
paths = write_class_averager(averager, out, metadata=particles.metadata, pixel_size=particles.pixel_size)
for name, path in paths.items():
    print(f"{name:>16}: {path}")
