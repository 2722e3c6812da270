"""Read RELION particle sets and write the outputs of a classification.

A particle set is a RELION STAR file whose ``rlnImageName`` column addresses
images in MRC stacks: ``000042@Extract/job007/Micrographs/mic001.mrcs`` is the
42nd image (counted from 1) of that stack. STAR files are parsed with
``starfile`` and MRC files with ``mrcfile``. Stacks are memory-mapped read
only, so only the images a STAR file names are read, and input files are never
written.

The code lives in one private module per concern, whose public names are
re-exported here:

- ``_star``: RELION STAR tables (blocks, optics groups, image names, stack
  paths, pixel size and origins);
- ``_mrc``: MRC stacks (header checks, memory maps, Dask arrays, writing);
- ``_particles``: :func:`read_particle_table` and :func:`load_particles`, which
  read, check, CTF-correct and align the images of a STAR file;
- ``_outputs``: :func:`write_classification` and :func:`write_class_averager`.
"""

from ._mrc import dask_stack, read_image_shape, read_stack
from ._outputs import OUTPUT_FILES, write_class_averager, write_classification
from ._particles import CTF_CORRECTIONS, load_particles, read_particle_table
from ._star import IMAGE_COLUMN, OPTICS_ATTR, OPTICS_GROUP_COLUMN

__all__ = [
    "CTF_CORRECTIONS",
    "IMAGE_COLUMN",
    "OPTICS_ATTR",
    "OPTICS_GROUP_COLUMN",
    "OUTPUT_FILES",
    "dask_stack",
    "load_particles",
    "read_image_shape",
    "read_particle_table",
    "read_stack",
    "write_class_averager",
    "write_classification",
]
