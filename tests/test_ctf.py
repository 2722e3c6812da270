"""The CTF with RELION's conventions, phase flipping (sklearn_kerdensom.ctf) and CTF correction on read."""

import json

import numpy as np
import pandas as pd
import pytest
import scipy.constants as constants
import sklearn
from sklearn.pipeline import make_pipeline

from sklearn_kerdensom import ClassAverager, KerDenSOM, MaskVectorizer, circular_mask
from sklearn_kerdensom.ctf import (
    CTFParameters,
    PhaseFlipper,
    contrast_transfer,
    electron_wavelength,
    flip_phases,
)
from sklearn_kerdensom.datasets import make_adk_path
from sklearn_kerdensom.io import load_particles
from sklearn_kerdensom.metrics import position_correlation

from .test_io import RELION31_PIXEL_SIZE, RELION31_STAR, _mrc_data, _write_mrc, _write_star

MICROSCOPE = {"voltage": 300.0, "spherical_aberration": 2.7, "amplitude_contrast": 0.07}


def _parameters(**changes):
    return CTFParameters(
        **{"defocus_u": 15000.0, "defocus_v": 15000.0, "defocus_angle": 0.0, **MICROSCOPE, **changes}
    )


def _textbook_ctf(frequency, defocus, voltage, cs_mm, amplitude_contrast, phase_shift_deg=0.0):
    """sqrt(1 - A^2) sin(chi) + A cos(chi), chi = pi lambda df k^2 - pi/2 Cs lambda^3 k^4 + shift: the
    textbook form, written independently of the module's (the wavelength is tested on its own)."""
    wavelength = electron_wavelength(voltage)
    chi = (
        np.pi * wavelength * defocus * frequency**2
        - np.pi / 2 * cs_mm * 1e7 * wavelength**3 * frequency**4
        + np.deg2rad(phase_shift_deg)
    )
    return np.sqrt(1 - amplitude_contrast**2) * np.sin(chi) + amplitude_contrast * np.cos(chi)


def test_electron_wavelength_is_the_relativistic_one():
    # h / sqrt(2 m e V (1 + e V / (2 m c^2))) from CODATA constants, in Å.
    for kilovolts in (100.0, 200.0, 300.0):
        volts = kilovolts * 1e3
        momentum = np.sqrt(
            2
            * constants.m_e
            * constants.e
            * volts
            * (1 + constants.e * volts / (2 * constants.m_e * constants.c**2))
        )
        # RELION's 12.2643247 is an older CODATA value of h / sqrt(2 m e), 6e-6 above today's.
        assert electron_wavelength(kilovolts) == pytest.approx(constants.h / momentum * 1e10, rel=1e-5)
    assert electron_wavelength(300) == pytest.approx(0.01969, abs=1e-5)


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"amplitude_contrast": 0.1, "spherical_aberration": 0.01},
        {"phase_shift": 90.0},
        {"voltage": 200.0},
    ],
)
def test_an_isotropic_ctf_matches_the_textbook_formula_on_the_fft_grid(changes):
    pixel_size, size = 1.3, 64
    parameters = _parameters(**changes)
    ctf = contrast_transfer((size, size), pixel_size, parameters)[0]
    rows = np.fft.fftfreq(size, d=pixel_size)[:, None]
    columns = np.fft.rfftfreq(size, d=pixel_size)[None, :]
    expected = _textbook_ctf(
        np.hypot(rows, columns),
        15000.0,
        parameters.voltage[0],
        parameters.spherical_aberration[0],
        parameters.amplitude_contrast[0],
        parameters.phase_shift[0],
    )
    np.testing.assert_allclose(ctf, expected, atol=1e-9)
    # Positive at low frequency: particles white on black, as RELION extracts them.
    assert ctf[0, 0] > 0 and ctf[0, 1] > 0


def test_the_first_zero_of_the_ctf_is_where_the_formula_puts_it():
    # Cs = 0, amplitude contrast 0: CTF = sin(pi lambda df k^2), first zero at k = 1 / sqrt(lambda df).
    pixel_size, size, defocus = 1.0, 512, 20000.0
    ctf = contrast_transfer(
        (size, size),
        pixel_size,
        _parameters(defocus_u=defocus, defocus_v=defocus, spherical_aberration=0, amplitude_contrast=0),
    )[0, 0, :]
    first_zero = 1 / np.sqrt(electron_wavelength(300) * defocus)
    frequencies = np.fft.rfftfreq(size, d=pixel_size)
    sign_change = np.flatnonzero(np.diff(np.sign(ctf[1:])))[0] + 1
    assert frequencies[sign_change] <= first_zero <= frequencies[sign_change + 1]


@pytest.mark.parametrize("angle", [0.0, 30.0, 90.0, 135.0])
def test_astigmatism_puts_defocus_u_along_the_defocus_angle_from_the_x_axis(angle):
    pixel_size, size = 1.0, 128
    astigmatic = _parameters(defocus_u=20000.0, defocus_v=12000.0, defocus_angle=angle)
    along_u = _parameters(defocus_u=20000.0, defocus_v=20000.0)
    along_v = _parameters(defocus_u=12000.0, defocus_v=12000.0)
    ctfs = [contrast_transfer((size, size), pixel_size, p)[0] for p in (astigmatic, along_u, along_v)]
    rows = np.fft.fftfreq(size)[:, None] * np.ones((1, size // 2 + 1))
    columns = np.fft.rfftfreq(size)[None, :] * np.ones((size, 1))
    # x is the column axis, y the row axis; the direction of a frequency is atan2(y, x).
    direction = np.rad2deg(np.arctan2(rows, columns))
    for offset, isotropic in ((0.0, ctfs[1]), (90.0, ctfs[2])):
        difference = (direction - angle - offset + 90) % 180 - 90
        on_axis = (np.abs(difference) < 1e-9) & (np.hypot(rows, columns) > 0)
        if not on_axis.any():
            continue
        np.testing.assert_allclose(ctfs[0][on_axis], isotropic[on_axis], atol=1e-9)
    assert not np.allclose(ctfs[0], ctfs[1])


def test_bfactor_and_scale_envelope_the_ctf():
    plain = contrast_transfer((32, 32), 2.0, _parameters())[0]
    damped = contrast_transfer((32, 32), 2.0, _parameters(bfactor=100.0, scale=0.5))[0]
    frequency2 = np.fft.fftfreq(32, d=2.0)[:, None] ** 2 + np.fft.rfftfreq(32, d=2.0)[None, :] ** 2
    np.testing.assert_allclose(damped, 0.5 * np.exp(-25.0 * frequency2) * plain, atol=1e-12)


def test_ctf_parameters_from_a_relion_table():
    table = pd.DataFrame(
        {
            "rlnDefocusU": [15000.0, 16000.0],
            "rlnVoltage": 300,
            "rlnSphericalAberration": 2.7,
            "rlnAmplitudeContrast": 0.1,
        }
    )
    parameters = CTFParameters.from_table(table)
    np.testing.assert_array_equal(parameters.defocus_v, [15000.0, 16000.0])  # V defaults to U
    np.testing.assert_array_equal(parameters.defocus_angle, [0.0, 0.0])
    np.testing.assert_array_equal(parameters.scale, [1.0, 1.0])
    assert len(parameters.subset(slice(1, 2))) == 1
    with pytest.raises(ValueError, match="rlnVoltage, rlnSphericalAberration"):
        CTFParameters.from_table(table[["rlnDefocusU", "rlnAmplitudeContrast"]])
    with pytest.raises(ValueError, match=r"amplitude_contrast \(rlnAmplitudeContrast\) must be in \[0, 1\)"):
        CTFParameters.from_table(table.assign(rlnAmplitudeContrast=1.5))
    with pytest.raises(ValueError, match=r"defocus_u \(rlnDefocusU\) is NaN"):
        CTFParameters.from_table(table.assign(rlnDefocusU=[np.nan, 1.0]))
    with pytest.raises(ValueError, match="rlnVoltage must hold numbers"):
        CTFParameters.from_table(table.assign(rlnVoltage="high"))
    with pytest.raises(ValueError, match="different numbers of particles"):
        CTFParameters(defocus_u=[1.0, 2.0], defocus_v=[1.0, 2.0, 3.0], defocus_angle=0, **MICROSCOPE)


def test_phase_flipping_undoes_the_simulators_ctf_sign():
    # The simulator's unflipped particles, flipped by PhaseFlipper, are its flipped particles.
    unflipped = make_adk_path(40, binning=4, phase_flip=False, random_state=3)
    flipped = make_adk_path(40, binning=4, phase_flip=True, random_state=3)
    before = unflipped.images.copy()
    corrected = PhaseFlipper(pixel_size=unflipped.pixel_size).fit_transform(
        unflipped.images, ctf=unflipped.ctf
    )
    np.testing.assert_array_equal(unflipped.images, before)  # the input is not modified
    assert corrected.dtype == np.float32
    scale = np.abs(flipped.images).max()
    np.testing.assert_allclose(corrected, flipped.images, atol=1e-5 * scale)
    # Flipping twice gives the images back.
    twice = flip_phases(corrected, unflipped.ctf, unflipped.pixel_size)
    np.testing.assert_allclose(twice, unflipped.images, atol=1e-5 * scale)


def test_phase_flipper_on_memory_maps_and_dask_arrays(tmp_path):
    da = pytest.importorskip("dask.array")
    data = make_adk_path(30, binning=4, phase_flip=False, random_state=0)
    expected = PhaseFlipper(pixel_size=data.pixel_size).fit_transform(data.images, ctf=data.ctf)
    path = tmp_path / "images.npy"
    np.save(path, data.images)
    mapped = np.load(path, mmap_mode="r")
    from_map = PhaseFlipper(pixel_size=data.pixel_size).fit_transform(mapped, ctf=data.ctf)
    assert isinstance(from_map, np.memmap)
    np.testing.assert_array_equal(from_map, expected)
    lazy = PhaseFlipper(pixel_size=data.pixel_size).fit_transform(
        da.from_array(data.images, chunks=(7, -1, -1)), ctf=data.ctf
    )
    np.testing.assert_allclose(lazy.compute(), expected, rtol=0, atol=1e-6 * np.abs(expected).max())


def test_phase_flipper_errors_name_the_problem():
    data = make_adk_path(10, binning=4, phase_flip=False, random_state=0)
    with pytest.raises(ValueError, match="needs the particles' CTF: pass ctf="):
        PhaseFlipper(pixel_size=1.0).fit(data.images)
    with pytest.raises(ValueError, match="parameters of 10 particles, but there are 4 images"):
        PhaseFlipper(pixel_size=1.0).fit(data.images[:4], ctf=data.ctf)
    with pytest.raises(ValueError, match="needs the pixel size"):
        PhaseFlipper().fit(data.images, ctf=data.ctf)
    with pytest.raises(ValueError, match=r"shape \(n_images, height, width\)"):
        PhaseFlipper(pixel_size=1.0).fit(data.images.reshape(10, -1), ctf=data.ctf)
    with pytest.raises(ValueError, match="pixel_size"):
        PhaseFlipper(pixel_size=-1.0).fit(data.images, ctf=data.ctf)
    fitted = PhaseFlipper(pixel_size=1.0).fit(data.images, ctf=data.ctf)
    with pytest.raises(ValueError, match=r"fitted on \(16, 16\)"):
        fitted.transform(data.images[:, :8, :8], ctf=data.ctf)
    table = pd.DataFrame(
        {
            "rlnDefocusU": 1e4,
            "rlnVoltage": 300,
            "rlnSphericalAberration": 2.7,
            "rlnAmplitudeContrast": 0.1,
            "rlnImagePixelSize": [1.0, 2.0] * 5,
        }
    )
    with pytest.raises(ValueError, match="2 pixel sizes"):
        PhaseFlipper().fit(data.images, ctf=table)


def test_phase_flipper_in_a_pipeline_gets_the_ctf_by_metadata_routing():
    data = make_adk_path(60, binning=4, phase_flip=False, random_state=1)
    mask = circular_mask(data.images.shape[1:], 6)
    flipped = PhaseFlipper(pixel_size=data.pixel_size).fit_transform(data.images, ctf=data.ctf)
    expected = make_pipeline(MaskVectorizer(mask), KerDenSOM(2, 2, max_iter=20, random_state=0)).fit(flipped)
    with sklearn.config_context(enable_metadata_routing=True):
        pipeline = make_pipeline(
            PhaseFlipper(pixel_size=data.pixel_size),
            MaskVectorizer(mask),
            KerDenSOM(2, 2, max_iter=20, random_state=0),
        ).fit(data.images, ctf=data.ctf)
        np.testing.assert_array_equal(pipeline.predict(data.images, ctf=data.ctf), expected.predict(flipped))


def _simulated_project(tmp_path, n_particles, *, phase_flip=False, optics_flag=None, random_state=0):
    """Simulated particles as a RELION 3.1 job: Extract/job001/particles.{mrcs,star}, with CTF columns."""
    data = make_adk_path(n_particles, binning=2, phase_flip=phase_flip, random_state=random_state)
    job = tmp_path / "Extract" / "job001"
    job.mkdir(parents=True)
    _write_mrc(job / "particles.mrcs", data.images, voxel_size=data.pixel_size)
    optics = {
        "rlnOpticsGroup": [1],
        "rlnOpticsGroupName": ["opticsGroup1"],
        "rlnVoltage": [300.0],
        "rlnSphericalAberration": [2.7],
        "rlnAmplitudeContrast": [0.1],
        "rlnImagePixelSize": [data.pixel_size],
        "rlnImageSize": [data.images.shape[1]],
        "rlnImageDimensionality": [2],
    }
    if optics_flag is not None:
        optics["rlnCtfDataArePhaseFlipped"] = [optics_flag]
    particles = {
        "rlnImageName": [f"{i + 1:06d}@Extract/job001/particles.mrcs" for i in range(n_particles)],
        "rlnDefocusU": data.ctf.defocus_u,
        "rlnDefocusV": data.ctf.defocus_v,
        "rlnDefocusAngle": data.ctf.defocus_angle,
        "rlnOpticsGroup": 1,
    }
    _write_star(job / "particles.star", particles, optics)
    return data, job / "particles.star"


def test_load_particles_phase_flips_before_aligning(tmp_path, monkeypatch):
    data, star = _simulated_project(tmp_path, 12)
    monkeypatch.chdir(tmp_path)
    flipped = load_particles(star, ctf="phase-flip")
    assert flipped.phase_flipped.all()
    expected = flip_phases(data.images, data.ctf, data.pixel_size)
    np.testing.assert_allclose(flipped.images, expected, atol=1e-5 * np.abs(expected).max())
    auto = load_particles(star, ctf="auto")
    np.testing.assert_array_equal(auto.images, flipped.images)
    untouched = load_particles(star)  # ctf="none" by default
    assert not untouched.phase_flipped.any()
    np.testing.assert_array_equal(untouched.images, data.images)
    with pytest.raises(ValueError, match="ctf must be one of"):
        load_particles(star, ctf="wiener")


def test_particles_already_flipped_are_not_flipped_again(tmp_path, monkeypatch):
    data, star = _simulated_project(tmp_path, 6, phase_flip=True, optics_flag=1)
    monkeypatch.chdir(tmp_path)
    particles = load_particles(star, ctf="phase-flip")
    assert not particles.phase_flipped.any()
    np.testing.assert_array_equal(particles.images, data.images)


def test_real_relion_particles_are_phase_flipped_with_their_own_ctf():
    flipped = load_particles(RELION31_STAR, ctf="auto", align=False)
    assert flipped.phase_flipped.all() and flipped.pixel_size == RELION31_PIXEL_SIZE
    raw = _mrc_data(RELION31_STAR.parent / "relion31.mrcs")
    parameters = CTFParameters.from_table(flipped.metadata)
    assert parameters.defocus_u[0] != parameters.defocus_v[0]  # astigmatic, as real particles are
    signs = np.where(contrast_transfer(raw.shape[1:], RELION31_PIXEL_SIZE, parameters) < 0, -1, 1)
    expected = np.fft.irfft2(np.fft.rfft2(raw.astype(np.float64)) * signs, s=raw.shape[1:])
    np.testing.assert_allclose(flipped.images, expected, atol=1e-4 * np.abs(raw).max())
    # The power spectrum is unchanged: flipping changes signs only. (Not on the Nyquist column, where an
    # astigmatic CTF can differ in sign between a frequency and its Hermitian partner.)
    np.testing.assert_allclose(
        np.abs(np.fft.rfft2(flipped.images))[..., :-1],
        np.abs(np.fft.rfft2(raw))[..., :-1],
        rtol=1e-3,
        atol=1e-3 * np.abs(raw).sum(),
    )


def test_after_phase_flipping_the_map_no_longer_tracks_defocus(tmp_path, monkeypatch):
    # Measured: R(defocus) 0.56 before, 0.17 after. (With 1000 particles on 7 x 7: 0.89 -> 0.19, see
    # benchmarks/bench_ctf.py.)
    data = make_adk_path(400, binning=2, phase_flip=False, random_state=0)
    mask = circular_mask(data.images.shape[1:], 13)
    defocus = data.ctf.defocus_u

    def correlations(images):
        averager = ClassAverager(make_pipeline(MaskVectorizer(mask), KerDenSOM(5, 5, random_state=0))).fit(
            images
        )
        positions = averager.node_positions_[averager.labels_]
        return position_correlation(positions, defocus)

    raw_defocus = correlations(data.images)
    flipped_defocus = correlations(
        PhaseFlipper(pixel_size=data.pixel_size).fit_transform(data.images, ctf=data.ctf)
    )
    assert flipped_defocus < 0.5 * raw_defocus


def test_classify_phase_flips_a_relion_job_by_default(tmp_path):
    from .test_cli import FAST, PARTICLES, kerdensom

    _, star = _simulated_project(tmp_path, 30)
    code, stdout, stderr = kerdensom(
        "classify", "Extract/job001/particles.star", "--mask-radius", "13", *FAST,
        "--out", "KerDenSOM/job002", cwd=tmp_path,
    )  # fmt: skip
    assert code == 0, stderr
    assert "phase-flipped 30 of 30 particles" in stdout
    assert "defocus vs map position: R = " in stdout
    summary = json.loads((tmp_path / "KerDenSOM" / "job002" / "summary.json").read_text())
    assert summary["ctf"]["correction"] == "auto" and summary["ctf"]["phase_flipped"] == 30
    assert 0 <= summary["ctf"]["defocus_correlation"] <= 1

    code, stdout, _ = kerdensom(
        "classify", star, "--mask-radius", "13", *FAST, "--ctf", "none", "--out", tmp_path / "none",
        cwd=tmp_path,
    )  # fmt: skip
    assert code == 0 and "phase-flipped" not in stdout
    # Asked for, and the STAR file has no CTF: an error naming the flag, before any image is read.
    code, _, stderr = kerdensom(
        "classify", PARTICLES / "rln_proj_64.star", "--mask-radius", "13", "--ctf", "phase-flip",
        "--out", tmp_path / "no_ctf",
    )  # fmt: skip
    assert code == 1 and "--ctf phase-flip: " in stderr and "rlnDefocusU" in stderr
    assert not (tmp_path / "no_ctf").exists()


def test_ctf_functions_and_phase_flipper_refuse_impossible_pixel_sizes():
    """A NaN pixel size in the table flipped nothing, silently; 0 divided by zero (API trial)."""
    images = np.random.default_rng(0).normal(size=(2, 16, 16))
    table = pd.DataFrame(
        {
            "rlnDefocusU": [1e4, 1.2e4],
            "rlnVoltage": 300.0,
            "rlnSphericalAberration": 2.7,
            "rlnAmplitudeContrast": 0.1,
            "rlnImagePixelSize": np.nan,
        }
    )
    with pytest.raises(ValueError, match="rlnImagePixelSize is nan; a pixel size is a positive number"):
        PhaseFlipper().fit_transform(images, ctf=table)
    parameters = CTFParameters.from_table(table)
    for pixel_size in (0.0, -1.0, np.nan):
        with pytest.raises(ValueError, match="'pixel_size' parameter of contrast_transfer"):
            contrast_transfer((16, 16), pixel_size, parameters)
        with pytest.raises(ValueError, match="'pixel_size' parameter of flip_phases"):
            flip_phases(images, parameters, pixel_size)
    with pytest.raises(ValueError, match="CTF of 2 particles, but there are 3 images"):
        flip_phases(np.concatenate([images, images[:1]]), parameters, 1.0)
    # One CTF for every image, as before the checks (a review found it refused).
    one = flip_phases(images, parameters.subset(np.array([0])), 1.0)
    np.testing.assert_array_equal(one[1], flip_phases(images[1:], parameters.subset(np.array([0])), 1.0)[0])


def test_ctf_parameters_name_a_field_that_holds_no_numbers():
    with pytest.raises(ValueError, match="defocus_u must hold numbers"):
        CTFParameters(
            defocus_u=["a"],
            defocus_v=[1.0],
            defocus_angle=[0.0],
            voltage=300.0,
            spherical_aberration=2.7,
            amplitude_contrast=0.1,
        )
