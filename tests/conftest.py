import os

# scikit-learn's array_api_dispatch (tests/test_array_api.py) needs SciPy's Array API support, which
# SciPy reads from the environment when it is first imported.
os.environ.setdefault("SCIPY_ARRAY_API", "1")

import json
from pathlib import Path

import numpy as np
import pytest

DATA = Path(__file__).parent / "data"
REFERENCE_CASES = ["rect_small", "rect_scipion", "kcmeans", "norm", "one_dim"]


def load_reference(name):
    """One Xmipp trajectory (see tests/data/README.md) with its parameters decoded."""
    with np.load(DATA / f"{name}.npz") as archive:
        reference = dict(archive)
    reference["params"] = json.loads(str(reference["params"]))
    return reference


@pytest.fixture
def blobs():
    """Three well-separated Gaussian blobs in 10 dimensions, float64."""
    rng = np.random.default_rng(0)
    centres = rng.normal(scale=5.0, size=(3, 10))
    return np.concatenate([c + rng.normal(size=(40, 10)) for c in centres])
