"""The kerdensom command, driven as a subprocess."""

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import mrcfile
import numpy as np
import pytest
import starfile

from sklearn_kerdensom.cli import main

from .test_io import record_temporary_files

PARTICLES = Path(__file__).parent / "data" / "particles"
FAST = ["--columns", "3", "--rows", "2", "--steps", "2", "--max-iter", "30"]


def kerdensom(*args, cwd=None):
    """Run the command; returns (exit code, stdout, stderr)."""
    environment = {**os.environ, "MPLBACKEND": "Agg"}
    completed = subprocess.run(
        [sys.executable, "-m", "sklearn_kerdensom.cli", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=environment,
        timeout=300,
    )
    return completed.returncode, completed.stdout, completed.stderr


def assert_outputs(out, n_particles, n_classes, extra=()):
    names = sorted(path.name for path in out.iterdir())
    assert names == sorted(
        [
            "averages.mrcs",
            "representatives.mrcs",
            "particles.star",
            "classes.star",
            "run_model.star",
            "run_data.star",
            "map.png",
            "report.html",
            "summary.json",
            *extra,
        ]
    )
    with mrcfile.open(out / "averages.mrcs") as mrc:
        assert mrc.data.shape[0] == n_classes
    with mrcfile.open(out / "representatives.mrcs") as mrc:
        assert mrc.data.shape[0] == n_classes
    particles = starfile.read(out / "particles.star", always_dict=True)["particles"]
    assert len(particles) == n_particles
    assert particles["rlnClassNumber"].between(1, n_classes).all()
    classes = starfile.read(out / "classes.star")
    assert classes["kerdensomClassCount"].sum() == n_particles
    summary = json.loads((out / "summary.json").read_text())
    assert summary["class_sizes"] == classes["kerdensomClassCount"].tolist()
    assert len(summary["history"]) == 2 and "timings" in summary and "versions" in summary
    assert (out / "map.png").stat().st_size > 1000
    return summary


def test_classify_rln_proj_64(tmp_path):
    code, stdout, stderr = kerdensom(
        "classify", PARTICLES / "rln_proj_64.star", "--mask-radius", "25", *FAST, "--out", tmp_path / "out"
    )
    assert code == 0, stderr
    assert "step 1/2" in stdout and "regularization=" in stdout and "elapsed=" in stdout
    summary = assert_outputs(tmp_path / "out", n_particles=5, n_classes=6)
    assert summary["image_shape"] == [64, 64]


def test_classify_with_scratch_files_gives_the_same_classes(tmp_path):
    star = PARTICLES / "rln_proj_64.star"
    code, _, stderr = kerdensom("classify", star, "--mask-radius", "25", *FAST, "--out", tmp_path / "memory")
    assert code == 0, stderr
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    code, _, stderr = kerdensom(
        "classify", star, "--mask-radius", "25", *FAST, "--scratch", scratch, "--jobs", "2",
        "--out", tmp_path / "mapped",
    )  # fmt: skip
    assert code == 0, stderr
    assert_outputs(tmp_path / "mapped", n_particles=5, n_classes=6)
    classes = [
        starfile.read(tmp_path / run / "particles.star", always_dict=True)["particles"]["rlnClassNumber"]
        for run in ("memory", "mapped")
    ]
    np.testing.assert_array_equal(*classes)
    averages = [mrcfile.read(tmp_path / run / "averages.mrcs") for run in ("memory", "mapped")]
    np.testing.assert_allclose(*averages, rtol=0, atol=1e-6 * np.abs(averages[0]).max())


def test_scratch_holds_the_images_and_the_vectors_and_the_temporary_directory_is_restored(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("MPLBACKEND", "Agg")
    directories = record_temporary_files(monkeypatch)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    before = tempfile.tempdir
    star = PARTICLES / "rln_proj_64.star"
    arguments = ["classify", star, "--mask-radius", "25", *FAST, "--scratch", scratch]
    arguments += ["--out", tmp_path / "out"]
    assert main(map(str, arguments)) == 0
    # The aligned images, then the masked vectors of the fit and of the final assignment.
    assert directories and set(directories) == {str(scratch)}
    assert tempfile.tempdir == before
    wrong_mask = tmp_path / "mask.mrc"
    with mrcfile.new(wrong_mask) as mrc:
        mrc.set_data(np.ones((8, 8), dtype=np.float32))
    failed = ["classify", star, "--mask", wrong_mask, "--scratch", scratch, "--out", tmp_path / "out2"]
    assert main(map(str, failed)) == 1
    assert tempfile.tempdir == before


def test_classify_relion31_with_relocation_and_a_mask_file(tmp_path):
    # The STAR file of a project whose stacks have moved elsewhere.
    project = tmp_path / "project"
    project.mkdir()
    star = starfile.read(PARTICLES / "relion31.star", always_dict=True)
    star["particles"]["rlnImageName"] = star["particles"]["rlnImageName"].str.replace(
        "@", "@Extract/job133/Micrographs/"
    )
    starfile.write(star, project / "particles.star")
    mask = np.zeros((256, 256), dtype=np.float32)
    mask[28:228, 28:228] = 1
    with mrcfile.new(tmp_path / "mask.mrc") as mrc:
        mrc.set_data(mask)
    code, stdout, stderr = kerdensom(
        "classify", project / "particles.star", "--image-root", PARTICLES, "--mask", tmp_path / "mask.mrc",
        *FAST, "--quiet", "--out", tmp_path / "out",
    )  # fmt: skip
    assert code == 0, stderr
    assert stdout == ""
    summary = assert_outputs(tmp_path / "out", n_particles=5, n_classes=6)
    assert summary["pixel_size"] == pytest.approx(2.806)
    written = starfile.read(tmp_path / "out" / "particles.star", always_dict=True)
    assert "optics" in written


def test_demo(tmp_path):
    code, stdout, stderr = kerdensom("demo", "--n-particles", "300", *FAST, "--out", tmp_path / "demo")
    assert code == 0, stderr
    summary = assert_outputs(
        tmp_path / "demo", n_particles=300, n_classes=6, extra=["path.png", "particles.mrcs"]
    )
    assert summary["path_correlation"] > 0.5
    assert "path coordinate vs map position" in stdout
    assert summary["subspace_components"] is None


def test_a_subspace_larger_than_the_data_says_what_it_used(tmp_path):
    """--subspace beyond the data's dimensions ran without a word and the summary recorded the request."""
    code, _, stderr = kerdensom(
        "classify", PARTICLES / "rln_proj_64.star", "--mask-radius", "20", *FAST, "--subspace", "100000",
        "--out", tmp_path / "out",
    )  # fmt: skip
    assert code == 0, stderr
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["subspace_components"] == 5  # the basis of 5 particles
    assert summary["parameters"]["subspace_components"] == 100000  # what was asked
    assert "--subspace 100000 is more dimensions than the data have (" in stderr
    assert "5 particles): the fit ran in a subspace of 5" in stderr


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["classify", "missing.star", "--mask-radius", "20"], 1, "particle file not found"),
        (
            ["classify", PARTICLES / "rln_proj_64.star", "--mask-radius", "20", "--reg-initial", "10"],
            2,
            "--reg-initial=10.0 is smaller than --reg-final=200.0",
        ),
        (
            ["classify", PARTICLES / "rln_proj_64.star", "--mask-radius", "20", "--reg-final", "0"],
            2,
            "--reg-final=0",
        ),
        (
            ["classify", PARTICLES / "rln_proj_64.star", "--mask-radius", "20", "--df", "-1"],
            2,
            "argument --df: must be > 0",
        ),
        (
            ["classify", PARTICLES / "rln_proj_64.star", "--mask-radius", "-3"],
            2,
            "--mask-radius: must be > 0",
        ),
        (
            ["classify", PARTICLES / "rln_proj_64.star", "--mask-radius", "20", "--soft-edge", "nan"],
            2,
            "argument --soft-edge: must be a finite number",
        ),
        (
            ["classify", PARTICLES / "rln_proj_64.star", "--mask-radius", "20", "--columns", "seven"],
            2,
            "argument --columns: must be an integer, got 'seven'",
        ),
        (
            ["classify", PARTICLES / "rln_proj_64.star", "--mask-radius", "20", "--image-root", "nowhere"],
            2,
            "argument --image-root: not an existing directory: nowhere",
        ),
        (
            ["classify", PARTICLES / "rln_proj_64.star", "--mask-radius", "20", "--pixel-size", "0"],
            2,
            "argument --pixel-size: must be > 0",
        ),
        (
            [
                "classify",
                PARTICLES / "rln_proj_64.star",
                "--mask-radius",
                "20",
                "--smoothness",
                "bending",
                "--objective",
                "xmipp",
            ],
            2,
            "--smoothness='bending' needs --objective='likelihood'",
        ),
        (["classify", PARTICLES / "rln_proj_64.star", "--mask", "nomask.mrc"], 1, "mask file not found"),
        (["classify", PARTICLES / "rln_proj_64.star"], 2, "one of the arguments --mask --mask-radius"),
        (
            ["classify", PARTICLES / "rln_proj_64.star", "--mask-radius", "20", "--columns", "0"],
            2,
            "positive",
        ),
        (["demo", "--topology", "square"], 2, "invalid choice"),
        (
            ["classify", PARTICLES / "rln_proj_64.star", "--mask-radius", "20", "--scratch", "nowhere"],
            2,
            "argument --scratch: not an existing directory: nowhere",
        ),
        (
            ["classify", PARTICLES / "rln_proj_64.star", "--mask-radius", "20", "--jobs", "0"],
            2,
            "number of threads",
        ),
        (
            ["classify", PARTICLES / "rln_proj_64.star", "--mask-radius", "20", "--annealing-tol", "-1"],
            2,
            "argument --annealing-tol: must be >= 0",
        ),
    ],
)
def test_bad_input_gives_one_line_error(tmp_path, args, code, message):
    out = tmp_path / "out"
    exit_code, _, stderr = kerdensom(*args, "--out", out, cwd=tmp_path)
    assert exit_code == code
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert message in lines[-1] and "error:" in lines[-1]
    # our errors are one line; argparse's come after its usage line
    assert len(lines) == 1 or lines[0].startswith("usage:")
    assert not out.exists()
    assert [path.name for path in tmp_path.iterdir() if path.name.startswith(".out")] == []


def test_wrong_mask_size(tmp_path):
    with mrcfile.new(tmp_path / "mask.mrc") as mrc:
        mrc.set_data(np.ones((32, 32), dtype=np.float32))
    code, stdout, stderr = kerdensom(
        "classify", PARTICLES / "rln_proj_64.star", "--mask", tmp_path / "mask.mrc", "--out", tmp_path / "out"
    )
    assert code == 1
    mask = tmp_path / "mask.mrc"
    assert "read" not in stdout  # found from the stack's header, before any particle is read
    assert stderr.strip() == (
        f"kerdensom: error: mask {mask} has shape (32, 32), but the particles are classified at (64, 64) px"
    )
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "values, message",
    [
        (2.0, "mask values must be in [0, 1]; got values from 2.0 to 2.0"),
        (np.nan, "Input mask contains NaN"),
        (0.0, "mask selects no pixel"),
    ],
)
@pytest.mark.filterwarnings("ignore:Data array contains NaN values:RuntimeWarning")  # mrcfile, writing it
def test_mask_values_are_checked_before_any_particle_is_read(tmp_path, values, message):
    """A new-user trial found these refused only after every particle was read, phase-flipped and
    aligned: hours on a large data set."""
    mask = tmp_path / "mask.mrc"
    with mrcfile.new(mask) as mrc:
        mrc.set_data(np.full((64, 64), values, dtype=np.float32))
    code, stdout, stderr = kerdensom(
        "classify", PARTICLES / "rln_proj_64.star", "--mask", mask, "--out", tmp_path / "out"
    )
    assert code == 1 and "read" not in stdout
    assert stderr.startswith(f"kerdensom: error: mask {mask}: ") and message in stderr
    assert not (tmp_path / "out").exists()


def test_a_mask_that_is_no_mrc_file_is_named(tmp_path):
    mask = tmp_path / "mask.mrc"
    mask.write_text("junk\n")
    code, stdout, stderr = kerdensom(
        "classify", PARTICLES / "rln_proj_64.star", "--mask", mask, "--out", tmp_path / "out"
    )
    assert code == 1 and "read" not in stdout
    assert f"mask {mask} is not a readable MRC file (" in stderr and mask.read_text() == "junk\n"


def test_soft_edge_with_a_mask_file_is_refused(tmp_path):
    mask = tmp_path / "mask.mrc"
    with mrcfile.new(mask) as mrc:
        mrc.set_data(np.ones((64, 64), dtype=np.float32))
    arguments = ["classify", PARTICLES / "rln_proj_64.star", "--mask", mask, "--soft-edge", "5"]
    code, stdout, stderr = kerdensom(*arguments, "--out", tmp_path / "o")
    assert code == 2 and "read" not in stdout and "a --mask file has its own edge" in stderr
    assert not (tmp_path / "o").exists()


def test_existing_output_directory_needs_overwrite(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    arguments = ["classify", PARTICLES / "rln_proj_64.star", "--mask-radius", "25", *FAST, "--quiet"]
    code, _, stderr = kerdensom(*arguments, "--out", out)
    assert code == 1 and "already exists; use --overwrite" in stderr
    assert [path.name for path in out.iterdir()] == ["keep.txt"]
    # --overwrite replaces only an earlier run's output (tests/test_cli_outputs.py): never the user's file.
    code, _, stderr = kerdensom(*arguments, "--out", out, "--overwrite")
    assert code == 2 and "did not write (keep.txt)" in stderr
    assert [path.name for path in out.iterdir()] == ["keep.txt"]


def test_input_files_are_not_modified(tmp_path):
    before = {path.name: path.read_bytes() for path in PARTICLES.iterdir()}
    code, _, stderr = kerdensom(
        "classify",
        PARTICLES / "rln_proj_64.star",
        "--mask-radius",
        "25",
        *FAST,
        "--quiet",
        "--out",
        tmp_path / "o",
    )
    assert code == 0, stderr
    assert {path.name: path.read_bytes() for path in PARTICLES.iterdir()} == before


def test_classify_a_relion_job_from_the_project_directory_with_no_extra_flags(tmp_path):
    """RELION writes image names relative to the project directory and runs every program there."""
    from .test_io import _relion_project

    project, _ = _relion_project(tmp_path)
    code, _, stderr = kerdensom(
        "classify", "Refine3D/job200/run_data.star", "--mask-radius", "100", *FAST, "--quiet",
        "--out", "KerDenSOM/job201", cwd=project,
    )  # fmt: skip
    assert code == 0, stderr
    assert_outputs(project / "KerDenSOM" / "job201", n_particles=5, n_classes=6)


def test_settings_that_make_little_sense_are_warned_before_any_work(tmp_path):
    # On 895f8d5: 5 particles on 49 classes and a mask beyond the box passed silently.
    code, stdout, stderr = kerdensom(
        "classify", PARTICLES / "rln_proj_64.star", "--mask-radius", "40", "--max-iter", "5",
        "--out", tmp_path / "out",
    )  # fmt: skip
    assert code == 0, stderr
    warnings = [line for line in stderr.splitlines() if line.startswith("kerdensom: warning:")]
    assert any("5 particles for 49 classes" in line for line in warnings)
    assert any("--mask-radius 40 reaches beyond the 64 x 64 px box" in line for line in warnings)
    # rln_proj_64 has no pixel size in its STAR file, and 0 in its MRC header.
    assert any("no pixel size in the STAR file or the MRC headers" in line for line in warnings)
    # Nor has it CTF parameters: if its particles were not corrected, the map would sort them by defocus.
    assert any("has no CTF parameters (rlnDefocusU, rlnVoltage" in line for line in warnings)
    assert stdout.index("read 5 particles") >= 0  # the run goes on
    code, _, stderr = kerdensom(
        "classify", PARTICLES / "rln_proj_64.star", "--mask-radius", "20", "--columns", "1", "--rows", "1",
        "--pixel-size", "1.5", "--ctf", "none", "--out", tmp_path / "sensible",
    )  # fmt: skip
    assert code == 0 and "warning" not in stderr, stderr
    code, _, stderr = kerdensom(
        "classify", PARTICLES / "rln_proj_64.star", "--mask-radius", "40", "--max-iter", "5", "--quiet",
        "--out", tmp_path / "quiet",
    )  # fmt: skip
    assert code == 0 and stderr == ""


def test_verbose_prints_every_iteration(tmp_path):
    arguments = ["demo", "--n-particles", "60", *FAST]
    code, stdout, stderr = kerdensom(*arguments, "--out", tmp_path / "plain")
    assert code == 0, stderr
    code, verbose, stderr = kerdensom(*arguments, "-v", "--out", tmp_path / "verbose")
    assert code == 0, stderr
    iterations = [line for line in verbose.splitlines() if " iteration " in line]
    summary = json.loads((tmp_path / "verbose" / "summary.json").read_text())
    assert len(iterations) == summary["n_iter"] and "sigma=" in iterations[0]
    assert not any(" iteration " in line for line in stdout.splitlines())


def test_annealing_tol_reaches_the_fit(tmp_path):
    # Four steps: the first and the last are held to --tol whatever --annealing-tol says.
    arguments = ["demo", "--n-particles", "400", "--columns", "4", "--rows", "3", "--steps", "4", "--quiet"]
    steps = {}
    for annealing_tol in ("auto", "1e-7"):
        out = tmp_path / annealing_tol
        code, _, stderr = kerdensom(*arguments, "--annealing-tol", annealing_tol, "--out", out)
        assert code == 0, stderr
        summary = json.loads((out / "summary.json").read_text())
        assert summary["parameters"]["annealing_tol"] == (1e-7 if annealing_tol == "1e-7" else "auto")
        steps[annealing_tol] = summary["n_iter"]
    assert steps["auto"] < steps["1e-7"]


def test_progress_bars_on_a_terminal_only(tmp_path):
    """On a terminal, bars for reading, aligning and fitting (with rate and time left); in a pipe, none."""
    import fcntl
    import pty
    import struct
    import termios

    arguments = ["classify", PARTICLES / "rln_proj_64.star", "--mask-radius", "25", *FAST]
    leader, follower = pty.openpty()
    # A terminal of 24 rows and 120 columns (a new pseudo-terminal has none, and tqdm draws nothing there).
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))
    run = subprocess.Popen(
        [sys.executable, "-m", "sklearn_kerdensom.cli", *map(str, arguments), "--out", tmp_path / "tty"],
        stdin=follower, stdout=follower, stderr=follower, env={**os.environ, "MPLBACKEND": "Agg"},
    )  # fmt: skip
    os.close(follower)
    screen = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the command has exited and closed the terminal
            break
        if not chunk:
            break
        screen += chunk
    assert run.wait(timeout=120) == 0, screen.decode()
    text = screen.decode()
    assert "reading: 100%" in text and "aligning: 100%" in text and "5/5" in text
    # The fit's bar moves with the iterations of each annealing step (FAST: 2 steps).
    assert "fitting:" in text and "step 2/2, iteration" in text
    code, stdout, stderr = kerdensom(*arguments, "--out", tmp_path / "pipe")
    assert code == 0 and "reading" not in stderr + stdout and "fitting" not in stderr and "%|" not in stderr


def test_error_messages_name_options_but_leave_paths_alone():
    """The keywords a reading function suggests become the options; a path that contains the same text
    (a directory named pixel_size=1.06) is left as it is (a review found it rewritten)."""
    from sklearn_kerdensom.cli._arguments import _reading_keywords_in_flags

    message = (
        "stack 's.mrcs' named in pixel_size=1.06/p.star was not found; looked at: pixel_size=1.06/s.mrcs. "
        "Run from the RELION project directory, or give where the stacks are now with image_root=."
    )
    assert _reading_keywords_in_flags(message) == message.replace("image_root=.", "--image-root DIR.")
    hint = "no pixel size; pass pixel_size=."
    assert _reading_keywords_in_flags(hint) == "no pixel size; pass --pixel-size."
