"""cryoSPARC particle files (.cs) as input, written here the way cryoSPARC writes them (cryosparc-tools)."""

import numpy as np
import pytest

from sklearn_kerdensom.alignment import apply_alignment
from sklearn_kerdensom.ctf import CTFParameters, flip_phases
from sklearn_kerdensom.datasets import make_adk_path
from sklearn_kerdensom.datasets._projects import write_cryosparc_project
from sklearn_kerdensom.io import load_particles, read_particle_table

from .test_io import RELION31_STAR

pytest.importorskip("cryosparc.dataset")


def _cryosparc_project(tmp_path, n_particles=8):
    """A simulated cryoSPARC project (``kerdensom simulate --format cryosparc``) whose 2D classification
    job J2 gave the particles in-plane alignments and classes, with its passthrough file (the CTF) in
    another row order, and the stack named as an imported one (``>``)."""
    from cryosparc.dataset import Dataset

    data = make_adk_path(n_particles, binning=4, phase_flip=False, random_state=0)
    project = tmp_path / "P1"
    cs_path = write_cryosparc_project(project, data)
    rng = np.random.default_rng(0)
    psi = rng.uniform(-np.pi, np.pi, n_particles)
    shifts = rng.uniform(-1.5, 1.5, (n_particles, 2))
    particles = Dataset.load(str(cs_path))
    particles.add_fields([("alignments2D/class", "u4")])
    particles["alignments2D/pose"] = psi
    particles["alignments2D/shift"] = shifts
    particles["alignments2D/class"] = np.arange(n_particles) % 3
    particles["blob/path"] = [">" + str(path) for path in particles["blob/path"]]
    particles.save(str(cs_path))
    passthrough_path = project / "J2" / "J2_passthrough_particles.cs"
    Dataset.load(str(passthrough_path)).take(np.arange(n_particles)[::-1]).save(str(passthrough_path))
    return data, project, psi, shifts


def test_a_cryosparc_job_reads_as_a_relion_table(tmp_path, monkeypatch):
    data, project, psi, shifts = _cryosparc_project(tmp_path)
    monkeypatch.chdir(tmp_path)  # not the project directory: the stacks are found above the job's folder
    table = read_particle_table(project / "J2" / "J2_particles.cs")
    metadata = table.metadata
    assert list(table.stack_paths.values()) == [project / "J1" / "extract" / "particles.mrc"]
    assert metadata["rlnImageName"].iloc[2] == "000003@J1/extract/particles.mrc"
    np.testing.assert_allclose(metadata["rlnDefocusU"], data.ctf.defocus_u, rtol=1e-6)  # joined on uid
    np.testing.assert_allclose(metadata["rlnAnglePsi"], np.rad2deg(psi), rtol=1e-5)
    np.testing.assert_allclose(metadata["rlnOriginXAngst"], shifts[:, 0] * data.pixel_size, rtol=1e-5)
    np.testing.assert_array_equal(metadata["rlnClassNumber"], np.arange(8) % 3 + 1)
    np.testing.assert_array_equal(table.optics["rlnVoltage"], [300.0])
    assert table.optics["rlnImagePixelSize"].iloc[0] == pytest.approx(data.pixel_size)


def test_cryosparc_particles_are_phase_flipped_then_aligned(tmp_path, monkeypatch):
    data, project, psi, shifts = _cryosparc_project(tmp_path)
    monkeypatch.chdir(project)
    particles = load_particles("J2/J2_particles.cs", ctf="auto")
    assert particles.phase_flipped.all() and particles.pixel_size == pytest.approx(data.pixel_size)
    flipped = flip_phases(data.images, CTFParameters.from_table(particles.metadata), data.pixel_size)
    expected = apply_alignment(flipped, shifts, np.rad2deg(psi))
    np.testing.assert_allclose(particles.images, expected, atol=1e-4 * np.abs(expected).max())


def test_classify_a_cryosparc_job_and_read_its_particles_back(tmp_path):
    import starfile

    from .test_cli import FAST, kerdensom

    _, project, _, _ = _cryosparc_project(tmp_path, n_particles=12)
    code, stdout, stderr = kerdensom(
        "classify", "J2/J2_particles.cs", "--mask-radius", "6", *FAST, "--out", "kerdensom", cwd=project
    )  # fmt: skip
    assert code == 0, stderr
    assert "phase-flipped 12 of 12 particles" in stdout
    written = starfile.read(project / "kerdensom" / "particles.star", always_dict=True)
    assert set(written) == {"optics", "particles"}
    assert "kerdensomCryosparcUid" in written["particles"].columns
    # The written table is a RELION one this tool reads again, from anywhere.
    again = read_particle_table(project / "kerdensom" / "particles.star")
    assert len(again.metadata) == 12


def test_a_missing_passthrough_or_blob_field_is_named(tmp_path):
    from cryosparc.dataset import Dataset

    _, project, _, _ = _cryosparc_project(tmp_path)
    partial = Dataset.load(str(project / "J2" / "J2_passthrough_particles.cs")).slice(0, 5)
    partial.save(str(tmp_path / "short_passthrough.cs"))
    with pytest.raises(ValueError, match=r"3 of the 8 particles of .* missing"):
        read_particle_table(project / "J2" / "J2_particles.cs", passthrough=tmp_path / "short_passthrough.cs")
    (tmp_path / "alone").mkdir()
    Dataset.allocate(2, [("ctf/df1_A", "f4")]).save(str(tmp_path / "alone" / "no_blob.cs"))
    with pytest.raises(ValueError, match="blob/path, blob/idx are missing"):
        read_particle_table(tmp_path / "alone" / "no_blob.cs")
    with pytest.raises(ValueError, match=r"passthrough is for cryoSPARC \.cs particle files"):
        read_particle_table(RELION31_STAR, passthrough=tmp_path / "short_passthrough.cs")


def test_a_missing_or_unreadable_cs_file_is_a_one_line_error(tmp_path):
    """A passthrough file that is not there, or a .cs file that is not one, is named in a one-line error
    (found by a new-user trial: both printed cryosparc-tools' traceback)."""
    from .test_cli import FAST, kerdensom

    _, project, _, _ = _cryosparc_project(tmp_path)
    particles = project / "J2" / "J2_particles.cs"
    with pytest.raises(FileNotFoundError, match=r"cryoSPARC passthrough file not found: .*nothere\.cs"):
        read_particle_table(particles, passthrough=tmp_path / "nothere.cs")
    junk = tmp_path / "junk.cs"
    junk.write_text("junk\n")
    with pytest.raises(ValueError, match=r"junk\.cs is not a cryoSPARC \.cs particle file that can be read"):
        read_particle_table(junk)
    passthrough = ["--passthrough", tmp_path / "nothere.cs"]
    for arguments in (
        ["classify", particles, *passthrough, "--mask-radius", "6", *FAST, "--out", tmp_path / "a"],
        ["classify", junk, "--mask-radius", "6", *FAST, "--out", tmp_path / "b"],
        ["select", junk, "--classes", "1", "--out", tmp_path / "c.star"],
    ):
        code, _, stderr = kerdensom(*arguments)
        assert code == 1 and "Traceback" not in stderr and stderr.count("\n") == 1, stderr
    assert junk.read_text() == "junk\n"
    assert not any((tmp_path / name).exists() for name in ("a", "b", "c.star"))


def test_a_cs_file_without_its_passthrough_says_where_the_ctf_went(tmp_path):
    from .test_cli import FAST, kerdensom

    _, project, _, _ = _cryosparc_project(tmp_path)
    alone = tmp_path / "copied"
    alone.mkdir()
    (project / "J2" / "J2_particles.cs").rename(alone / "J2_particles.cs")
    code, _, stderr = kerdensom(
        "classify", alone / "J2_particles.cs", "--image-root", project, "--mask-radius", "6", *FAST,
        "--out", tmp_path / "run",
    )  # fmt: skip
    assert code == 0, stderr
    assert "no CTF parameters" in stderr
    assert "there is no passthrough file beside it: give it with --passthrough" in stderr


def test_the_passthrough_of_the_job_is_found_among_several(tmp_path):
    """With another job's passthrough file beside it, the lookup gave up and the CTF warning said there
    was none (found by a verification trial)."""
    import shutil

    from sklearn_kerdensom.io._cryosparc import find_passthrough

    _, project, _, _ = _cryosparc_project(tmp_path)
    particles = project / "J2" / "J2_particles.cs"
    own = project / "J2" / "J2_passthrough_particles.cs"
    shutil.copy(own, project / "J2" / "J7_passthrough_particles.cs")
    assert find_passthrough(particles) == own
    table = read_particle_table(particles)
    assert "rlnDefocusU" in table.metadata.columns
    own.unlink()
    job = project / "J2"
    shutil.copy(job / "J7_passthrough_particles.cs", job / "J8_passthrough_particles.cs")
    assert find_passthrough(particles) is None  # two other jobs': not guessed
