"""``--out`` never loses a file the tool did not write, through the real command in a subprocess.

Each case is one an adversarial sweep found on an earlier main: ``--out .`` or ``--out`` over the inputs
with ``--overwrite`` deleted the user's files, a slower concurrent run deleted a faster one's finished
output, and a kill during the replacement left ``--out`` half-deleted.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import starfile

from sklearn_kerdensom._output_directory import file_record

from .test_cli import FAST, PARTICLES, kerdensom

STACK_RUN = ["--mask-radius", "25", *FAST, "--quiet"]


def snapshot(directory):
    """Every file under ``directory`` with its bytes."""
    return {
        str(path.relative_to(directory)): path.read_bytes() for path in directory.rglob("*") if path.is_file()
    }


def hidden_leftovers(directory):
    return sorted(path.name for path in directory.iterdir() if path.name.startswith("."))


@pytest.fixture
def project(tmp_path):
    """``tmp_path/p``: a STAR file, its stack and a user's notes."""
    project = tmp_path / "p"
    project.mkdir()
    for name in ("rln_proj_64.star", "rln_proj_64.mrcs"):
        shutil.copy(PARTICLES / name, project / name)
    (project / "notes.txt").write_text("my notes")
    return project


@pytest.fixture(scope="module")
def earlier_output(tmp_path_factory):
    """A finished output of seed 1 (``--out`` of the replacement tests gets a copy: its manifest records
    contents, not places)."""
    out = tmp_path_factory.mktemp("earlier") / "out"
    code, _, stderr = kerdensom(
        "classify", PARTICLES / "rln_proj_64.star", *STACK_RUN, "--seed", "1", "--out", out
    )
    assert code == 0, stderr
    return out


def patched_kerdensom(setup, *args, cwd=None):
    """The command in a subprocess whose module-level code first runs ``setup`` (to pause or kill the run
    at a chosen moment); returns the Popen."""
    program = f"import sys\n{setup}\nfrom sklearn_kerdensom.cli import main\nsys.exit(main(sys.argv[1:]))\n"
    return subprocess.Popen(
        [sys.executable, "-c", program, *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
        env={**os.environ, "MPLBACKEND": "Agg"},
    )


def wait_for(path, process, timeout=120):
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


# ---------------------------------------------------------------------------------------------------
# Refused before any work (exit 2): nothing is touched.


def test_out_dot_is_refused_and_deletes_nothing(project):
    # On main: deleted every file in p/, then failed with "[Errno 22] Invalid argument: '.'".
    before = snapshot(project)
    code, _stdout, stderr = kerdensom(
        "classify", "rln_proj_64.star", *STACK_RUN, "--out", ".", "--overwrite", cwd=project
    )
    assert code == 2 and "--out . is the current directory" in stderr
    assert snapshot(project) == before and hidden_leftovers(project) == []


def test_parent_of_the_current_directory_is_refused(project):
    work = project / "work"
    work.mkdir()
    code, _, stderr = kerdensom(
        "classify", "../rln_proj_64.star", *STACK_RUN, "--out", "..", "--overwrite", cwd=work
    )
    assert code == 2 and "holds the current directory" in stderr
    assert (project / "notes.txt").read_text() == "my notes"


def test_out_holding_the_inputs_is_refused(project, tmp_path):
    # On main: deleted the inputs and notes.txt, exited 0, and particles.star named a deleted stack.
    before = snapshot(project)
    code, _, stderr = kerdensom(
        "classify", project / "rln_proj_64.star", *STACK_RUN, "--out", project, "--overwrite", cwd=tmp_path
    )
    assert code == 2 and "holds the input file" in stderr and "Traceback" not in stderr
    assert snapshot(project) == before and hidden_leftovers(tmp_path) == []


def test_out_over_a_whole_relion_project_is_refused(tmp_path):
    """``--out proj`` where the STAR file is ``proj/Select/job005/particles.star`` and its images are in
    ``proj/Extract/job003/``."""
    project = tmp_path / "proj"
    (project / "Extract" / "job003").mkdir(parents=True)
    (project / "Select" / "job005").mkdir(parents=True)
    shutil.copy(PARTICLES / "rln_proj_64.mrcs", project / "Extract" / "job003" / "stack.mrcs")
    star = starfile.read(PARTICLES / "rln_proj_64.star", always_dict=True)
    star["particles"]["rlnImageName"] = [f"{i:06d}@../../Extract/job003/stack.mrcs" for i in range(1, 6)]
    starfile.write(star, project / "Select" / "job005" / "particles.star")
    before = snapshot(project)
    star_path = project / "Select" / "job005" / "particles.star"
    code, _, stderr = kerdensom(
        "classify", star_path, *STACK_RUN, "--out", "proj", "--overwrite", cwd=tmp_path
    )
    assert code == 2 and "holds the input file" in stderr
    assert snapshot(project) == before


def test_out_holding_a_stack_named_by_the_star_file_is_refused(tmp_path):
    """A STAR file whose images are ``run1/averages.mrcs`` (an earlier run's output), with ``--out run1``."""
    code, _, stderr = kerdensom(
        "classify", PARTICLES / "rln_proj_64.star", *STACK_RUN, "--out", "run1", cwd=tmp_path
    )
    assert code == 0, stderr
    star = starfile.read(PARTICLES / "rln_proj_64.star", always_dict=True)
    star["particles"]["rlnImageName"] = [f"{i:06d}@run1/averages.mrcs" for i in range(1, 6)]
    starfile.write(star, tmp_path / "averages.star")
    before = snapshot(tmp_path / "run1")
    code, _, stderr = kerdensom(
        "classify", "averages.star", *STACK_RUN, "--out", "run1", "--overwrite", cwd=tmp_path
    )
    assert code == 2 and "holds the input file" in stderr and "run1/averages.mrcs;" in stderr
    assert snapshot(tmp_path / "run1") == before


def test_out_holding_the_mask_is_refused(project, tmp_path):
    import mrcfile
    import numpy as np

    out = tmp_path / "o"
    out.mkdir()
    with mrcfile.new(out / "mask.mrc") as mrc:
        mrc.set_data(np.ones((64, 64), dtype=np.float32))
    code, _, stderr = kerdensom(
        "classify",
        project / "rln_proj_64.star",
        "--mask",
        out / "mask.mrc",
        *FAST,
        "--out",
        out,
        "--overwrite",
    )
    assert code == 2 and "holds the input file" in stderr
    assert [path.name for path in out.iterdir()] == ["mask.mrc"]


def test_an_unusable_out_is_named_in_the_error(tmp_path):
    """The error named the hidden staging directory's random name, not the --out the user gave."""
    notes = tmp_path / "notes.txt"
    notes.write_text("a user's notes\n")
    for out in (notes / "run", notes / "deeper" / "run"):
        code, _, stderr = kerdensom("demo", "--n-particles", "50", *FAST, "--out", out)
        assert code == 1 and f"error: {out} cannot be written: {notes} is not a directory" in stderr
    assert notes.read_text() == "a user's notes\n" and [path.name for path in tmp_path.iterdir()] == [
        "notes.txt"
    ]


def test_overwrite_replaces_only_an_earlier_output(tmp_path):
    """``--overwrite`` replaces a directory that holds nothing but an earlier run's files (its manifest);
    one with any other file is refused, and that file kept."""
    out = tmp_path / "out"
    arguments = ["classify", PARTICLES / "rln_proj_64.star", *STACK_RUN]
    assert kerdensom(*arguments, "--out", out)[0] == 0
    manifest = sorted([*json.loads((out / "summary.json").read_text())["files"], "summary.json"])
    assert sorted(path.name for path in out.iterdir()) == manifest
    (out / "notes.txt").write_text("mine")
    code, _, stderr = kerdensom(*arguments, "--out", out, "--overwrite")
    assert code == 2 and "holds files kerdensom did not write (notes.txt)" in stderr
    assert (out / "notes.txt").read_text() == "mine"
    (out / "notes.txt").unlink()
    code, _, stderr = kerdensom(*arguments, "--seed", "3", "--out", out, "--overwrite")
    assert code == 0, stderr
    assert json.loads((out / "summary.json").read_text())["parameters"]["random_state"] == 3
    assert sorted(path.name for path in out.iterdir()) == manifest
    assert hidden_leftovers(tmp_path) == []


def test_another_tools_manifest_or_an_edited_output_is_never_overwritten(tmp_path):
    """A summary.json that lists files but was not written by kerdensom, and an earlier output whose
    particles.star the user edited, are both refused (review of the first fix: both were replaced)."""
    other = tmp_path / "other"
    other.mkdir()
    (other / "summary.json").write_text('{"tool": "x", "files": ["results.csv"]}')
    (other / "results.csv").write_text("v")
    arguments = ["classify", PARTICLES / "rln_proj_64.star", *STACK_RUN, "--overwrite"]
    code, _, stderr = kerdensom(*arguments, "--out", other)
    assert code == 2 and "did not write (results.csv, summary.json)" in stderr
    assert (other / "results.csv").read_text() == "v"
    out = tmp_path / "out"
    assert kerdensom(*arguments, "--out", out)[0] == 0
    with open(out / "particles.star", "a") as stream:
        stream.write("# my notes\n")
    edited = (out / "particles.star").read_bytes()
    code, _, stderr = kerdensom(*arguments, "--out", out)
    assert code == 2 and "particles.star, changed since kerdensom wrote it" in stderr
    assert (out / "particles.star").read_bytes() == edited


def test_a_directory_without_manifest_is_never_overwritten(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "summary.json").write_text("{}")  # someone else's summary.json
    code, _, stderr = kerdensom(
        "classify", PARTICLES / "rln_proj_64.star", *STACK_RUN, "--out", out, "--overwrite"
    )
    assert code == 2 and "did not write (summary.json)" in stderr
    assert (out / "summary.json").read_text() == "{}"


# ---------------------------------------------------------------------------------------------------
# Checked again at the end; concurrent runs.

PAUSE_BEFORE_PUBLISH = """
import pathlib, time
from sklearn_kerdensom import _output_directory
ready, go = pathlib.Path(sys.argv.pop()), pathlib.Path(sys.argv.pop())
_publish = _output_directory.OutputDirectory.publish
def publish(self):
    ready.touch()
    while not go.exists():
        time.sleep(0.05)
    return _publish(self)
_output_directory.OutputDirectory.publish = publish
"""


def test_a_slower_concurrent_run_keeps_the_finished_output_and_the_users_file(tmp_path):
    # On main: the slower run deleted the faster one's output (no --overwrite) and a file put there.
    out = tmp_path / "out"
    arguments = ["classify", PARTICLES / "rln_proj_64.star", *STACK_RUN, "--out", out]
    slow = patched_kerdensom(PAUSE_BEFORE_PUBLISH, *arguments, tmp_path / "go", tmp_path / "ready")
    wait_for(tmp_path / "ready", slow)
    assert kerdensom(*arguments)[0] == 0  # the faster run
    (out / "notes.txt").write_text("mine")
    before = snapshot(out)
    (tmp_path / "go").touch()
    _, stderr = slow.communicate(timeout=120)
    assert slow.returncode == 1
    assert "appeared while this run was working" in stderr and "outputs are in" in stderr
    assert snapshot(out) == before
    complete_output(tmp_path / "out.2")
    assert hidden_leftovers(tmp_path) == []


def test_a_file_added_during_an_overwrite_run_is_kept(tmp_path):
    out = tmp_path / "out"
    arguments = ["classify", PARTICLES / "rln_proj_64.star", *STACK_RUN, "--out", out, "--overwrite"]
    assert kerdensom(*arguments)[0] == 0
    slow = patched_kerdensom(PAUSE_BEFORE_PUBLISH, *arguments, tmp_path / "go", tmp_path / "ready")
    wait_for(tmp_path / "ready", slow)
    (out / "notes.txt").write_text("mine")
    (tmp_path / "go").touch()
    _, stderr = slow.communicate(timeout=120)
    assert slow.returncode == 1 and "can no longer be replaced" in stderr
    assert (out / "notes.txt").read_text() == "mine"
    assert (tmp_path / "out.2" / "summary.json").exists()


def test_an_output_replaced_by_another_run_meanwhile_is_kept(tmp_path, earlier_output):
    """Both runs have --overwrite; the slower one finds at the end an output other than the one it
    checked at the start, and leaves it."""
    out = tmp_path / "out"
    arguments = ["classify", PARTICLES / "rln_proj_64.star", *STACK_RUN, "--out", out, "--overwrite"]
    shutil.copytree(earlier_output, out)
    slow = patched_kerdensom(
        PAUSE_BEFORE_PUBLISH, *arguments, "--seed", "2", tmp_path / "go", tmp_path / "ready"
    )
    wait_for(tmp_path / "ready", slow)
    assert kerdensom(*arguments, "--seed", "3")[0] == 0
    (tmp_path / "go").touch()
    _, stderr = slow.communicate(timeout=120)
    assert slow.returncode == 1 and "changed while this run was working" in stderr
    assert complete_output(out) == 3 and complete_output(tmp_path / "out.2") == 2


USER_FILE_THEN_SIGTERM_AT_EXCHANGE = """
import os, pathlib, signal
from sklearn_kerdensom import _output_directory as module
_rename = module._rename_with_flags
def rename(source, target, flags):
    if flags == module._RENAME_EXCHANGE:
        (pathlib.Path(target) / "notes.txt").write_text("mine")  # arrives after the last check
        done = _rename(source, target, flags)
        os.kill(os.getpid(), signal.SIGTERM)
        return done
    return _rename(source, target, flags)
module._rename_with_flags = rename
"""


def test_a_signal_during_the_replacement_waits_and_keeps_a_late_user_file(tmp_path, earlier_output):
    # Review of the first fix: SIGTERM right after the exchange let the clean-up delete the earlier
    # output whole, with a user's file in it.
    out = tmp_path / "out"
    arguments = ["classify", PARTICLES / "rln_proj_64.star", *STACK_RUN, "--out", out, "--overwrite"]
    shutil.copytree(earlier_output, out)
    run = patched_kerdensom(USER_FILE_THEN_SIGTERM_AT_EXCHANGE, *arguments, "--seed", "2")
    _, stderr = run.communicate(timeout=120)
    assert run.returncode == 143 and "notes.txt: added while this run was working" in stderr
    assert complete_output(out) == 2
    (left,) = hidden_leftovers(tmp_path)
    assert (tmp_path / left / "notes.txt").read_text() == "mine"


KILL_BETWEEN_FALLBACK_RENAMES = """
import os, signal
from sklearn_kerdensom import _output_directory as module
module._renameat2 = lambda: None
_rename = os.rename
def rename(source, target, *args, **kwargs):
    if os.path.basename(str(source)).startswith(".out.") and ".old." not in str(source):
        os.kill(os.getpid(), signal.SIGKILL)
    return _rename(source, target, *args, **kwargs)
module.os.rename = rename
"""


def test_an_earlier_output_left_aside_by_a_kill_is_reported(tmp_path, earlier_output):
    """Without an atomic exchange, a kill between the two renames leaves the earlier output aside; the
    next run with that --out says where."""
    out = tmp_path / "out"
    arguments = ["classify", PARTICLES / "rln_proj_64.star", *STACK_RUN, "--out", out, "--overwrite"]
    shutil.copytree(earlier_output, out)
    run = patched_kerdensom(KILL_BETWEEN_FALLBACK_RENAMES, *arguments, "--seed", "2")
    run.communicate(timeout=120)
    assert run.returncode == -signal.SIGKILL and not out.exists()
    (left,) = tmp_path.glob(".out.old.*/output")
    assert complete_output(left) == 1
    code, _, stderr = kerdensom(*arguments, "--seed", "3")
    assert code == 0 and f"left an earlier output of {out} in {left}" in stderr
    assert complete_output(left) == 1 and complete_output(out) == 3


# ---------------------------------------------------------------------------------------------------
# A kill at any moment of the replacement leaves the old output intact or the new one complete.

KILL_AT_STEP = """
import os, signal
from sklearn_kerdensom import _output_directory as module
step = int(sys.argv.pop())
moments = 0
def moment():
    global moments
    moments += 1
    if moments == step:
        os.kill(os.getpid(), signal.SIGKILL)
_rename = module._rename_with_flags
def rename(*args):
    moment()
    return _rename(*args)
module._rename_with_flags = rename
_remove = module.OutputDirectory._remove_earlier_output
_unlink = module.Path.unlink
def unlink(self, *args, **kwargs):
    moment()
    return _unlink(self, *args, **kwargs)
def remove(self, directory):
    moment()
    module.Path.unlink = unlink
    try:
        return _remove(self, directory)
    finally:
        module.Path.unlink = _unlink
module.OutputDirectory._remove_earlier_output = remove
"""


def complete_output(out):
    """The seed of the run whose complete output ``out`` holds (every file of its manifest as it was
    written, no other)."""
    summary = json.loads((out / "summary.json").read_text())
    assert sorted(path.name for path in out.iterdir()) == sorted([*summary["files"], "summary.json"])
    assert all(file_record(out / name) == record for name, record in summary["files"].items())
    return summary["parameters"]["random_state"]


@pytest.mark.parametrize("step", range(1, 10))
def test_a_kill_during_the_replacement_never_leaves_a_partial_output(tmp_path, step, earlier_output):
    """Killed just before the exchange (1), before the old output's removal (2), before each of its 6 file
    deletions (3 to 8); the run completes with 9."""
    out = tmp_path / "out"
    arguments = ["classify", PARTICLES / "rln_proj_64.star", *STACK_RUN, "--out", out, "--overwrite"]
    shutil.copytree(earlier_output, out)
    run = patched_kerdensom(KILL_AT_STEP, *arguments, "--seed", "2", step)
    run.communicate(timeout=120)
    assert run.returncode in (-signal.SIGKILL, 0)
    assert complete_output(out) == (1 if step == 1 else 2)
    if run.returncode == 0:
        assert hidden_leftovers(tmp_path) == []


UNDELETABLE_AVERAGES = """
import pathlib
_unlink = pathlib.Path.unlink
def unlink(self, *args, **kwargs):
    if self.name == "averages.mrcs":
        raise PermissionError(1, "Operation not permitted", str(self))
    return _unlink(self, *args, **kwargs)
pathlib.Path.unlink = unlink
"""


def test_an_earlier_output_that_cannot_be_deleted_is_left_and_said(tmp_path, earlier_output):
    # On main: the old results were gone and the new ones discarded.
    out = tmp_path / "out"
    arguments = ["classify", PARTICLES / "rln_proj_64.star", *STACK_RUN, "--out", out, "--overwrite"]
    shutil.copytree(earlier_output, out)
    run = patched_kerdensom(UNDELETABLE_AVERAGES, *arguments, "--seed", "2")
    _, stderr = run.communicate(timeout=120)
    assert run.returncode == 0, stderr
    assert complete_output(out) == 2
    assert "warning: the outputs are in" in stderr and "averages.mrcs: Operation not permitted" in stderr
    (left,) = hidden_leftovers(tmp_path)
    assert [path.name for path in (tmp_path / left).iterdir()] == ["averages.mrcs"]


def test_replacement_without_renameat2(tmp_path, earlier_output):
    """Where the C library has no renameat2, the earlier output is renamed aside, then removed."""
    out = tmp_path / "out"
    arguments = ["classify", PARTICLES / "rln_proj_64.star", *STACK_RUN, "--out", out, "--overwrite"]
    shutil.copytree(earlier_output, out)
    run = patched_kerdensom(
        "from sklearn_kerdensom import _output_directory\n_output_directory._renameat2 = lambda: None",
        *arguments, "--seed", "2",
    )  # fmt: skip
    _, stderr = run.communicate(timeout=120)
    assert run.returncode == 0, stderr
    assert complete_output(out) == 2 and hidden_leftovers(tmp_path) == []


def test_two_concurrent_runs_leave_one_complete_output_and_lose_nothing(tmp_path):
    """Two unpatched runs started together: one output at ``out``, the other run's kept or refused."""
    out = tmp_path / "out"
    runs = [
        patched_kerdensom(
            "", "classify", PARTICLES / "rln_proj_64.star", *STACK_RUN, "--seed", seed, "--out", out
        )
        for seed in (1, 2)
    ]
    results = [(run.communicate(timeout=120)[1], run.returncode) for run in runs]
    assert sorted(code for _, code in results) == [0, 1], results
    winner = complete_output(out)
    (loser_stderr,) = [stderr for stderr, code in results if code == 1]
    if "outputs are in" in loser_stderr:  # both passed the start-up check: the later one kept its outputs
        assert complete_output(tmp_path / "out.2") == 3 - winner
    else:
        assert "already exists; use --overwrite" in loser_stderr
    assert hidden_leftovers(tmp_path) == []


# ---------------------------------------------------------------------------------------------------
# Interrupted and failed runs leave nothing behind; the output's permissions follow the umask.

PAUSE_IN_FIT = """
import pathlib, signal, time
# A runner started in the background (nohup, `pytest &`) ignores SIGINT, and its children inherit that.
signal.signal(signal.SIGINT, signal.default_int_handler)
from sklearn_kerdensom.cli import _classify
started = pathlib.Path(sys.argv.pop())
def _fit(*args, **kwargs):
    started.touch()
    time.sleep(120)
_classify._fit = _fit
"""


@pytest.mark.parametrize(
    "signal_number, code, message",
    [
        (signal.SIGTERM, 143, "kerdensom: terminated (SIGTERM)"),
        (signal.SIGHUP, 129, "kerdensom: terminated (SIGHUP)"),
        (signal.SIGINT, 130, "kerdensom: interrupted"),
    ],
)
def test_a_signal_removes_the_staging_directory(tmp_path, signal_number, code, message):
    # On main: SIGTERM left the hidden staging directory, Ctrl-C printed a 20-45 line traceback.
    run = patched_kerdensom(
        PAUSE_IN_FIT, "classify", PARTICLES / "rln_proj_64.star", *STACK_RUN, "--out", tmp_path / "a" / "out",
        tmp_path / "started",
    )  # fmt: skip
    wait_for(tmp_path / "started", run)
    assert hidden_leftovers(tmp_path / "a") != []  # the staging directory exists while the run works
    run.send_signal(signal_number)
    _, stderr = run.communicate(timeout=60)
    assert run.returncode == code and stderr.strip() == message
    assert sorted(path.name for path in tmp_path.iterdir()) == ["started"]


def test_an_unwritable_out_is_reported_before_any_work(tmp_path):
    # On main: reported after the whole fit.
    (tmp_path / "file").write_text("")
    code, stdout, stderr = kerdensom(
        "classify",
        PARTICLES / "rln_proj_64.star",
        "--mask-radius",
        "25",
        *FAST,
        "--out",
        tmp_path / "file" / "o",
    )
    assert (
        code == 1
        and f"{tmp_path / 'file' / 'o'} cannot be written: {tmp_path / 'file'} is not a directory" in stderr
    )
    assert "read" not in stdout and "fitting" not in stdout


FAIL_TO_WRITE = """
from sklearn_kerdensom import plotting
def plot_class_map(*args, **kwargs):
    raise OSError(28, "No space left on device")
plotting.plot_class_map = plot_class_map
"""


def test_a_failed_write_removes_the_parent_directories_it_made(tmp_path):
    # On main: a failed write to --out a/b/c/o left a/b/c behind.
    run = patched_kerdensom(
        FAIL_TO_WRITE,
        "classify",
        PARTICLES / "rln_proj_64.star",
        *STACK_RUN,
        "--out",
        "a/b/c/o",
        cwd=tmp_path,
    )
    _, stderr = run.communicate(timeout=120)
    assert run.returncode == 1 and stderr.strip() == "kerdensom: error: [Errno 28] No space left on device"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("umask, mode", [(0o022, 0o755), (0o027, 0o750)])
def test_output_permissions_follow_the_umask(tmp_path, umask, mode):
    # On main: always 0700.
    run = patched_kerdensom(
        f"import os\nos.umask({umask})",
        "classify",
        PARTICLES / "rln_proj_64.star",
        *STACK_RUN,
        "--out",
        tmp_path / "o",
    )
    _, stderr = run.communicate(timeout=120)
    assert run.returncode == 0, stderr
    assert (tmp_path / "o").stat().st_mode & 0o777 == mode


def test_demo_of_one_particle_writes_valid_json(tmp_path):
    # On main: "path_correlation": NaN, which is not JSON.
    code, stdout, stderr = kerdensom("demo", "--n-particles", "1", *FAST, "--out", tmp_path / "d")
    assert code == 0, stderr
    text = (tmp_path / "d" / "summary.json").read_text()

    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")

    assert json.loads(text, parse_constant=refuse)["path_correlation"] is None
    assert "R = undefined" in stdout


def test_a_map_larger_than_memory_is_an_invalid_command_line(tmp_path):
    # On main: a MemoryError traceback.
    code, _, stderr = kerdensom(
        "classify", PARTICLES / "rln_proj_64.star", "--mask-radius", "25",
        "--columns", "20000", "--rows", "20000", "--out", tmp_path / "o",
    )  # fmt: skip
    assert code == 2 and "error: a 20000 x 20000 map has 400000000 nodes" in stderr
    assert len(stderr.strip().splitlines()) == 1


def test_out_through_a_missing_directory_and_dot_dot(tmp_path):
    # Review: "nonexist/../o2" made nonexist/, then failed with "File exists".
    code, _, stderr = kerdensom(
        "classify", PARTICLES / "rln_proj_64.star", *STACK_RUN, "--out", "nonexist/../o2", cwd=tmp_path
    )
    assert code == 0, stderr
    assert sorted(path.name for path in tmp_path.iterdir()) == ["o2"]
    complete_output(tmp_path / "o2")


def test_a_symbolic_link_at_out_is_refused_not_followed(tmp_path):
    (tmp_path / "target").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "target")
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    for out, message in (("link", "exists and is not a directory"), ("loop", "cannot be resolved")):
        code, _, stderr = kerdensom(
            "classify", PARTICLES / "rln_proj_64.star", *STACK_RUN, "--out", out, "--overwrite", cwd=tmp_path
        )
        assert code == 2 and message in stderr and len(stderr.strip().splitlines()) == 1
    assert list((tmp_path / "target").iterdir()) == []
