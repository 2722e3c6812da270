"""cryoSPARC particle files (``.cs``), read with cryoSPARC's own ``cryosparc-tools`` as RELION tables.

A cryoSPARC job writes its particles as a ``.cs`` file (a NumPy record array) with the fields the job
changed, and a *passthrough* file (``J12_passthrough_particles.cs``) with those it passed on from its
inputs, often the CTF. The two are joined on ``uid`` and turned into the particle and optics tables
of a RELION 3.1 STAR file, converted as ``csparc2star.py`` (pyem) does, so the rest of the package
reads them as it reads RELION's:

* ``blob/path`` (relative to the cryoSPARC project directory; ``>`` marks an imported file) and
  ``blob/idx`` (from 0) make ``rlnImageName``;
* ``ctf/df1_A``, ``ctf/df2_A``, ``ctf/df_angle_rad`` (radians), ``ctf/phase_shift_rad``,
  ``ctf/accel_kv``, ``ctf/cs_mm``, ``ctf/amp_contrast`` make RELION's CTF columns (degrees);
* ``alignments2D/pose`` (radians) and ``alignments2D/shift`` (pixels of ``alignments2D/psize_A``) make
  ``rlnAnglePsi`` and ``rlnOriginX/YAngst``; ``alignments2D/class`` (from 0) ``rlnClassNumber``;
* ``ctf/exp_group_id`` makes the optics groups; ``uid`` is kept as ``kerdensomCryosparcUid``.

cryoSPARC's ``blob/sign`` is not applied: phase flipping and classification do not depend on the
particles' polarity.
"""

from pathlib import Path

import numpy as np
import pandas as pd

from ._star import IMAGE_COLUMN, OPTICS_GROUP_COLUMN

UID_COLUMN = "kerdensomCryosparcUid"

# cryoSPARC field: (RELION label, conversion to RELION's units).
_COLUMNS = {
    "ctf/df1_A": ("rlnDefocusU", None),
    "ctf/df2_A": ("rlnDefocusV", None),
    "ctf/df_angle_rad": ("rlnDefocusAngle", np.rad2deg),
    "ctf/phase_shift_rad": ("rlnPhaseShift", np.rad2deg),
    "ctf/accel_kv": ("rlnVoltage", None),
    "ctf/cs_mm": ("rlnSphericalAberration", None),
    "ctf/amp_contrast": ("rlnAmplitudeContrast", None),
    "blob/psize_A": ("rlnImagePixelSize", None),
    "alignments2D/pose": ("rlnAnglePsi", np.rad2deg),
    "alignments2D/class": ("rlnClassNumber", lambda classes: classes + 1),
}
# Properties of the microscope and the images, which RELION 3.1 keeps per optics group.
_OPTICS_COLUMNS = (
    "rlnVoltage",
    "rlnSphericalAberration",
    "rlnAmplitudeContrast",
    "rlnImagePixelSize",
    "rlnImageSize",
)


def _dataset_class():
    try:
        from cryosparc.dataset import Dataset
    except ImportError:
        raise ImportError(
            "reading cryoSPARC .cs files needs cryosparc-tools: pip install 'sklearn-kerdensom[cryosparc]'"
        ) from None
    return Dataset


def _load_dataset(path, role):
    """A ``.cs`` file as a cryosparc-tools Dataset; errors that name the file and what it is for."""
    Dataset = _dataset_class()
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"cryoSPARC {role} not found: {path}")
    try:
        return Dataset.load(str(path))
    except (MemoryError, OSError):  # out of memory, or a file that cannot be read (permissions)
        raise
    except Exception as error:  # cryosparc-tools' DatasetLoadError and NumPy's errors alike
        raise ValueError(f"{path} is not a cryoSPARC .cs {role} that can be read ({error})") from None


def passthrough_candidates(cs_path):
    """The ``*passthrough*.cs`` files beside a cryoSPARC ``.cs`` particle file, sorted."""
    cs_path = Path(cs_path)
    return sorted(path for path in cs_path.parent.glob("*passthrough*.cs") if path != cs_path)


def find_passthrough(cs_path):
    """The passthrough file of a cryoSPARC ``.cs`` particle file: the one beside it, or among several the
    one its job wrote for it (``J12_passthrough_particles.cs`` for ``J12_particles.cs``); None otherwise."""
    cs_path = Path(cs_path)
    candidates = passthrough_candidates(cs_path)
    if len(candidates) == 1:
        return candidates[0]
    job, _, rest = cs_path.name.partition("_")
    own = cs_path.with_name(f"{job}_passthrough_{rest}")
    return own if own in candidates else None


def read_cryosparc_tables(cs_path, passthrough=None):
    """The particle and optics tables, with RELION's labels, of a cryoSPARC particle file.

    Parameters
    ----------
    cs_path : path-like
        A ``.cs`` particle file.
    passthrough : path-like, default=None
        Its passthrough file; None finds it beside ``cs_path`` (:func:`find_passthrough`).

    Returns
    -------
    particles : pandas.DataFrame
    optics : pandas.DataFrame
        One row per ``ctf/exp_group_id`` (every group 1 without it), with the microscope and image
        columns that are constant within each group.

    Raises
    ------
    FileNotFoundError
        If the passthrough file given does not exist.
    ValueError
        If a file is not a readable ``.cs`` file, the files have no ``blob/path`` and ``blob/idx``, or
        the passthrough file lacks particles.
    """
    particles = _load_dataset(cs_path, "particle file")
    passthrough = find_passthrough(cs_path) if passthrough is None else Path(passthrough)
    if passthrough is not None:
        extra = _load_dataset(passthrough, "passthrough file")
        joined = particles.innerjoin(extra)
        if len(joined) != len(particles):
            raise ValueError(
                f"{passthrough} has {len(particles) - len(joined)} of the {len(particles)} particles of "
                f"{cs_path} missing (joined on uid); give the passthrough file of the same job."
            )
        particles = joined
    fields = set(particles.fields())
    missing = [field for field in ("blob/path", "blob/idx") if field not in fields]
    if missing:
        raise ValueError(f"{cs_path}: no particle images: the field(s) {', '.join(missing)} are missing.")

    paths = [_text(path).removeprefix(">") for path in particles["blob/path"]]
    table = pd.DataFrame(
        {
            IMAGE_COLUMN: [
                f"{index + 1:06d}@{path}" for index, path in zip(particles["blob/idx"], paths, strict=True)
            ]
        }
    )
    for field, (label, convert) in _COLUMNS.items():
        if field in fields:
            values = np.asarray(particles[field])
            table[label] = values if convert is None else convert(values)
    if "alignments2D/shift" in fields:
        shifts = np.asarray(particles["alignments2D/shift"], dtype=np.float64)
        scale = np.asarray(particles["alignments2D/psize_A"]) if "alignments2D/psize_A" in fields else None
        if scale is None and "blob/psize_A" in fields:
            scale = np.asarray(particles["blob/psize_A"])
        if scale is None:
            table["rlnOriginX"], table["rlnOriginY"] = shifts[:, 0], shifts[:, 1]
        else:
            table["rlnOriginXAngst"], table["rlnOriginYAngst"] = shifts[:, 0] * scale, shifts[:, 1] * scale
    if "blob/shape" in fields:
        table["rlnImageSize"] = np.asarray(particles["blob/shape"])[:, -1]
    groups = np.asarray(particles["ctf/exp_group_id"]) + 1 if "ctf/exp_group_id" in fields else 1
    table[OPTICS_GROUP_COLUMN] = groups
    table[UID_COLUMN] = np.asarray(particles["uid"])
    return _split_optics(table)


def _text(value):
    return value.decode() if isinstance(value, bytes) else str(value)


def _split_optics(table):
    """The particle table without, and an optics table with, the optics columns constant in each group."""
    by_group = table.groupby(OPTICS_GROUP_COLUMN, sort=True)
    constant = [
        label
        for label in _OPTICS_COLUMNS
        if label in table.columns and (by_group[label].nunique() == 1).all()
    ]
    optics = by_group[constant].first().reset_index()
    optics.insert(1, "rlnOpticsGroupName", [f"opticsGroup{group}" for group in optics[OPTICS_GROUP_COLUMN]])
    optics["rlnImageDimensionality"] = 2
    return table.drop(columns=constant), optics
