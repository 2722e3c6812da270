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
- ``_cryosparc``: cryoSPARC ``.cs`` particle files, as RELION tables;
- ``_outputs``: :func:`write_classification` and :func:`write_class_averager`;
- ``_subsets``: :func:`select_classes` and :func:`write_particle_star`, the
  particles of chosen classes as a STAR file.
"""

from ._mrc import dask_stack, read_image_shape, read_stack
from ._outputs import OUTPUT_FILES, PREVIOUS_CLASS_COLUMN, write_class_averager, write_classification
from ._particles import CTF_CORRECTIONS, load_particles, read_particle_table
from ._star import IMAGE_COLUMN, OPTICS_ATTR, OPTICS_GROUP_COLUMN, path_for_star, relocate_image_names
from ._subsets import CLASS_COLUMN, select_classes, write_particle_star

__all__ = [
    "CLASS_COLUMN",
    "CTF_CORRECTIONS",
    "IMAGE_COLUMN",
    "OPTICS_ATTR",
    "OPTICS_GROUP_COLUMN",
    "OUTPUT_FILES",
    "PREVIOUS_CLASS_COLUMN",
    "dask_stack",
    "load_particles",
    "path_for_star",
    "read_image_shape",
    "read_particle_table",
    "read_stack",
    "relocate_image_names",
    "select_classes",
    "write_class_averager",
    "write_classification",
    "write_particle_star",
]
