"""The README's walkthroughs run as written."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).parent.parent / "README.md"


def _walkthrough(heading):
    """The first ```bash block of the README section ``heading``."""
    text = README.read_text()
    section = text.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```bash\n(.*?)```", section, re.DOTALL).group(1)


@pytest.mark.parametrize(
    "heading, outputs",
    [
        (
            "From a RELION project",
            ["adk_project/KerDenSOM/job002/run_model.star", "adk_project/KerDenSOM/job004/particles.star"],
        ),
        ("From cryoSPARC", ["adk_cryosparc/kerdensom_J2/map.png", "adk_cryosparc/kerdensom_J2/subset.star"]),
    ],
)
def test_walkthrough_runs_as_written(heading, outputs, tmp_path):
    if heading == "From cryoSPARC":
        pytest.importorskip("cryosparc.dataset")
    bin_directory = Path(sys.executable).parent
    if shutil.which("kerdensom", path=str(bin_directory)) is None:
        pytest.skip("the kerdensom command is not installed beside this Python")
    environment = {
        **os.environ,
        "PATH": f"{bin_directory}{os.pathsep}{os.environ['PATH']}",
        "MPLBACKEND": "Agg",
    }
    script = "set -euo pipefail\n" + _walkthrough(heading)
    completed = subprocess.run(
        ["bash", "-c", script], cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=600
    )
    assert completed.returncode == 0, completed.stderr
    for output in outputs:
        assert (tmp_path / output).is_file(), output
