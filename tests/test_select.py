"""kerdensom select: the particles of chosen classes as a STAR file, classified again."""

import numpy as np
import starfile

from sklearn_kerdensom.io import read_particle_table

from .test_cli import FAST, kerdensom


def _demo_run(tmp_path):
    code, _, stderr = kerdensom("demo", "--n-particles", "120", *FAST, "--out", tmp_path / "demo", "--quiet")
    assert code == 0, stderr
    return tmp_path / "demo"


def test_select_classes_of_a_run_and_classify_them_again(tmp_path):
    run = _demo_run(tmp_path)
    classes = starfile.read(run / "classes.star")
    chosen = classes.loc[classes["kerdensomClassCount"] > 0, "rlnClassNumber"].to_list()[:2]
    expected = int(classes.loc[classes["rlnClassNumber"].isin(chosen), "kerdensomClassCount"].sum())
    subset_path = tmp_path / "subsets" / "subset.star"
    code, stdout, stderr = kerdensom(
        "select", run, "--classes", ",".join(map(str, chosen)), "--out", subset_path
    )  # fmt: skip
    assert code == 0, stderr
    assert f"{expected} particles of class(es) {', '.join(map(str, chosen))}" in stdout
    assert subset_path.read_text().startswith("# written by sklearn-kerdensom")
    subset = starfile.read(subset_path, always_dict=True)
    assert set(subset) == {"optics", "particles"} and len(subset["particles"]) == expected
    assert set(subset["particles"]["rlnClassNumber"]) == set(chosen)
    # Its image names resolve from where it is, from any directory.
    table = read_particle_table(subset_path)
    assert list(table.stack_paths.values()) == [run / "particles.mrcs"]
    code, stdout, stderr = kerdensom(
        "classify", subset_path, "--mask-radius", "13", "--columns", "2", "--rows", "1", "--steps", "2",
        "--out", tmp_path / "again", cwd=tmp_path / "subsets",
    )  # fmt: skip
    assert code == 0, stderr
    assert f"read {expected} particles" in stdout
    again = starfile.read(tmp_path / "again" / "particles.star", always_dict=True)["particles"]
    assert set(again["kerdensomPreviousClassNumber"]) == set(chosen)


def test_select_in_a_relion_project_writes_project_relative_names(tmp_path):
    from .test_io import _relion_project

    project, _ = _relion_project(tmp_path)
    code, _, stderr = kerdensom(
        "classify", "Refine3D/job200/run_data.star", "--mask-radius", "100", "--columns", "2", "--rows", "1",
        "--steps", "2", "--quiet", "--out", "KerDenSOM/job201", cwd=project,
    )  # fmt: skip
    assert code == 0, stderr
    written = starfile.read(project / "KerDenSOM" / "job201" / "particles.star", always_dict=True)
    assert written["particles"]["rlnImageName"].str.endswith("@Extract/job007/Micrographs/mic001.mrcs").all()
    model = starfile.read(project / "KerDenSOM" / "job201" / "run_model.star", always_dict=True)
    assert model["model_classes"]["rlnReferenceImage"].iloc[0] == "000001@KerDenSOM/job201/averages.mrcs"
    code, _, stderr = kerdensom(
        "select", "KerDenSOM/job201", "--classes", "1-2", "--out", "Select/job202/particles.star", cwd=project
    )  # fmt: skip
    assert code == 0, stderr
    subset = starfile.read(project / "Select" / "job202" / "particles.star", always_dict=True)["particles"]
    assert len(subset) == 5
    assert subset["rlnImageName"].str.endswith("@Extract/job007/Micrographs/mic001.mrcs").all()


def _select_in_process(capsys, *args):
    """``kerdensom select`` run by ``main`` in this process (no interpreter start-up): (code, stderr)."""
    from sklearn_kerdensom.cli import main

    try:
        code = main(["select", *map(str, args)])
    except SystemExit as exit:  # argparse's usage errors
        code = exit.code
    return code, capsys.readouterr().err


def test_select_refuses_what_it_must_not_do(tmp_path, capsys):
    run = _demo_run(tmp_path)
    for classes in ("three", "0", "5-3"):
        code, stderr = _select_in_process(capsys, run, "--classes", classes, "--out", tmp_path / "s.star")
        assert code == 2 and "--classes" in stderr and not (tmp_path / "s.star").exists()
    code, stderr = _select_in_process(capsys, run, "--classes", "7", "--out", tmp_path / "s.star")
    assert code == 1 and "--classes 7: the run" in stderr and "has 6 classes" in stderr

    foreign = tmp_path / "mine.star"
    foreign.write_text("a user's own file\n")
    for overwrite in ([], ["--overwrite"]):
        code, stderr = _select_in_process(capsys, run, "--classes", "1-6", "--out", foreign, *overwrite)
        assert code == 1 and foreign.read_text() == "a user's own file\n"
    assert "is not a subset written by kerdensom select" in stderr

    ours = tmp_path / "ours.star"
    assert _select_in_process(capsys, run, "--classes", "1-6", "--out", ours)[0] == 0
    code, stderr = _select_in_process(capsys, run, "--classes", "1-6", "--out", ours)
    assert code == 1 and "exists; nothing was written" in stderr
    assert _select_in_process(capsys, run, "--classes", "1-6", "--out", ours, "--overwrite")[0] == 0
    assert [path.name for path in tmp_path.iterdir() if path.name.startswith(".")] == []  # no temporary left

    # A file where --out needs a directory is named (a trial saw "[Errno 17] File exists").
    code, stderr = _select_in_process(capsys, run, "--classes", "1", "--out", foreign / "s.star")
    assert code == 1 and f"cannot be written: {foreign} is not a directory" in stderr
    assert foreign.read_text() == "a user's own file\n"

    # A subset the user has edited since is the user's file now (on main it was replaced).
    edited = ours.read_text() + "# my note on these classes\n"
    ours.write_text(edited)
    code, stderr = _select_in_process(capsys, run, "--classes", "1", "--out", ours, "--overwrite")
    assert code == 1 and "has been changed since" in stderr and ours.read_text() == edited
    # classify's own particles.star belongs to its run: select does not replace it either.
    run_star = run / "particles.star"
    before = run_star.read_bytes()
    code, stderr = _select_in_process(capsys, run, "--classes", "1", "--out", run_star, "--overwrite")
    assert code == 1 and "not a subset written by kerdensom select" in stderr
    assert run_star.read_bytes() == before


def test_write_particle_star_does_not_replace_a_file_unless_asked(tmp_path):
    import pytest

    from sklearn_kerdensom.io import write_particle_star

    from .test_io import RELION31_STAR

    table = read_particle_table(RELION31_STAR)
    target = tmp_path / "mine.star"
    target.write_text("a user's own file\n")
    with pytest.raises(FileExistsError, match="already exists; nothing was written"):
        write_particle_star(table, target)
    assert target.read_text() == "a user's own file\n"
    write_particle_star(table, target, overwrite=True)
    assert len(read_particle_table(target).metadata) == 5


def test_simulate_never_writes_into_an_existing_directory(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    (project / "notes.txt").write_text("a user's notes\n")
    code, _, stderr = kerdensom("simulate", project, "--n-particles", "10")
    assert code == 2 and "already exists" in stderr
    assert [path.name for path in project.iterdir()] == ["notes.txt"]
    assert (project / "notes.txt").read_text() == "a user's notes\n"
    assert [path.name for path in tmp_path.iterdir()] == ["project"]  # no staging directory left


def test_select_classes_takes_class_numbers_only():
    """1.5 selected class 1 and "12" classes 1 and 2 (API trial): the numbers are checked before the file
    is read."""
    import pytest

    from sklearn_kerdensom.io import select_classes

    for classes in ([1.5], "12", 12, [], [0], [[1, 2]], [np.nan]):
        with pytest.raises(ValueError, match="classes must be"):
            select_classes("not-read.star", classes)
