"""Every example runs, on small data, so that none of them rots."""

import runpy
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).parent.parent / "examples").glob("*.py"))


def test_there_are_examples():
    assert len(EXAMPLES) >= 4


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda path: path.stem)
def test_example_runs(example, monkeypatch):
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    monkeypatch.setenv("KERDENSOM_EXAMPLES_SMALL", "1")
    monkeypatch.setattr("sys.argv", [str(example)])
    docstring = example.read_text().split('"""')[1].strip().splitlines()
    assert docstring[1].startswith("=") and len(docstring[1]) >= len(docstring[0])  # a gallery title
    runpy.run_path(str(example), run_name="__main__")
    import matplotlib.pyplot as plt

    plt.close("all")
