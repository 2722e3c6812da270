"""Simulated particles written as a RELION or cryoSPARC project would hold them, to try the command
line on: ``kerdensom simulate``.

Both need the ``io`` extra (mrcfile, starfile, pandas); cryoSPARC files also the ``cryosparc`` extra.
"""

from pathlib import Path

import numpy as np

RELION_STACK = Path("Extract") / "job001" / "particles.mrcs"
RELION_STAR = Path("Extract") / "job001" / "particles.star"
CRYOSPARC_STACK = Path("J1") / "extract" / "particles.mrc"
CRYOSPARC_PARTICLES = Path("J2") / "J2_particles.cs"
CRYOSPARC_PASSTHROUGH = Path("J2") / "J2_passthrough_particles.cs"


def _write_stack(path, data):
    from ..io._mrc import _write_stack

    path.parent.mkdir(parents=True, exist_ok=True)
    _write_stack(path, data.images, data.pixel_size)


def write_relion_project(directory, data):
    """Write simulated particles as RELION's Extract job writes them, in ``directory`` (the project).

    Parameters
    ----------
    directory : path-like
        The project directory; ``Extract/job001/particles.mrcs`` and ``particles.star`` are written in it
        (image names relative to the project, as RELION writes them).
    data : Bunch
        A simulated set of :mod:`sklearn_kerdensom.datasets`, made with ``phase_flip=False`` as real
        extracted particles are: its CTF goes into the STAR file, which says the images are not
        phase-flipped; its ``path_coordinate`` too, as ``kerdensomPathCoordinate`` (the ground truth).

    Returns
    -------
    star_path : pathlib.Path
    """
    import pandas as pd
    import starfile

    from ..ctf import CTFParameters
    from . import MICROSCOPE

    directory = Path(directory)
    _write_stack(directory / RELION_STACK, data)
    labels = {name: label for name, (label, _) in CTFParameters.COLUMNS.items()}
    optics = pd.DataFrame(
        {
            "rlnOpticsGroup": [1],
            "rlnOpticsGroupName": ["opticsGroup1"],
            **{labels[name]: [value] for name, value in MICROSCOPE.items()},
            "rlnImagePixelSize": [data.pixel_size],
            "rlnImageSize": [data.images.shape[1]],
            "rlnImageDimensionality": [2],
            "rlnCtfDataArePhaseFlipped": [0],
        }
    )
    particles = pd.DataFrame(
        {
            "rlnImageName": [
                f"{index:06d}@{RELION_STACK.as_posix()}" for index in range(1, len(data.images) + 1)
            ],
            "rlnDefocusU": data.ctf.defocus_u,
            "rlnDefocusV": data.ctf.defocus_v,
            "rlnDefocusAngle": data.ctf.defocus_angle,
            "rlnAnglePsi": 0.0,
            "rlnOriginXAngst": 0.0,
            "rlnOriginYAngst": 0.0,
            "rlnOpticsGroup": 1,
            "kerdensomPathCoordinate": data.path_coordinate,
        }
    )
    starfile.write({"optics": optics, "particles": particles}, directory / RELION_STAR)
    return directory / RELION_STAR


def write_cryosparc_project(directory, data, *, random_state=0):
    """Write simulated particles as a cryoSPARC project holds them after extraction (job J1) and 2D
    classification (job J2), in ``directory``.

    Parameters
    ----------
    directory : path-like
        The project directory: ``J1/extract/particles.mrc``, ``J2/J2_particles.cs`` (images and 2D
        alignments, paths relative to the project) and ``J2/J2_passthrough_particles.cs`` (the CTF).
    data : Bunch
        As for :func:`write_relion_project`.
    random_state : int, default=0
        Seeds the particles' ``uid``.

    Returns
    -------
    cs_path : pathlib.Path
        ``J2/J2_particles.cs``.
    """
    try:
        from cryosparc.dataset import Dataset
    except ImportError:
        raise ImportError(
            "writing cryoSPARC .cs files needs cryosparc-tools: pip install 'sklearn-kerdensom[cryosparc]'"
        ) from None

    directory = Path(directory)
    n_particles = len(data.images)
    _write_stack(directory / CRYOSPARC_STACK, data)
    uid = np.random.default_rng(random_state).choice(2**62, size=n_particles, replace=False).astype(np.uint64)
    particles = Dataset.allocate(
        n_particles,
        [
            ("blob/path", "O"),
            ("blob/idx", "u4"),
            ("blob/shape", "u4", (2,)),
            ("blob/psize_A", "f4"),
            ("alignments2D/pose", "f4"),
            ("alignments2D/shift", "f4", (2,)),
            ("alignments2D/psize_A", "f4"),
        ],
    )
    particles["uid"] = uid
    particles["blob/path"] = [CRYOSPARC_STACK.as_posix()] * n_particles
    particles["blob/idx"] = np.arange(n_particles)
    particles["blob/shape"] = np.tile(data.images.shape[1:], (n_particles, 1))
    particles["blob/psize_A"] = data.pixel_size
    particles["alignments2D/psize_A"] = data.pixel_size
    (directory / CRYOSPARC_PARTICLES).parent.mkdir(parents=True, exist_ok=True)
    particles.save(str(directory / CRYOSPARC_PARTICLES))
    passthrough = Dataset.allocate(
        n_particles,
        [
            ("ctf/accel_kv", "f4"),
            ("ctf/cs_mm", "f4"),
            ("ctf/amp_contrast", "f4"),
            ("ctf/df1_A", "f4"),
            ("ctf/df2_A", "f4"),
            ("ctf/df_angle_rad", "f4"),
            ("ctf/phase_shift_rad", "f4"),
        ],
    )
    passthrough["uid"] = uid
    passthrough["ctf/accel_kv"] = data.ctf.voltage
    passthrough["ctf/cs_mm"] = data.ctf.spherical_aberration
    passthrough["ctf/amp_contrast"] = data.ctf.amplitude_contrast
    passthrough["ctf/df1_A"] = data.ctf.defocus_u
    passthrough["ctf/df2_A"] = data.ctf.defocus_v
    passthrough["ctf/df_angle_rad"] = np.deg2rad(data.ctf.defocus_angle)
    passthrough["ctf/phase_shift_rad"] = np.deg2rad(data.ctf.phase_shift)
    passthrough.save(str(directory / CRYOSPARC_PASSTHROUGH))
    return directory / CRYOSPARC_PARTICLES
