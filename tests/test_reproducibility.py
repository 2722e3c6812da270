import pickle

import joblib
import numpy as np
import pytest
from sklearn.base import clone

from sklearn_kerdensom import KerDenSOM


@pytest.mark.parametrize("init", ["pca", "random"])
@pytest.mark.parametrize("objective", ["likelihood", "xmipp"])
def test_same_random_state_gives_bit_identical_fits(blobs, init, objective):
    first = KerDenSOM(3, 3, init=init, objective=objective, random_state=42).fit(blobs)
    second = KerDenSOM(3, 3, init=init, objective=objective, random_state=42).fit(blobs)
    np.testing.assert_array_equal(first.cluster_centers_, second.cluster_centers_)
    assert first.sigma_ == second.sigma_
    np.testing.assert_array_equal(first.labels_, second.labels_)


def test_random_state_matters_for_random_init(blobs):
    first = KerDenSOM(3, 3, init="random", random_state=1).fit(blobs)
    second = KerDenSOM(3, 3, init="random", random_state=2).fit(blobs)
    assert not np.array_equal(first.cluster_centers_, second.cluster_centers_)


@pytest.mark.parametrize(
    "round_trip",
    [
        lambda som, tmp_path: pickle.loads(pickle.dumps(som)),
        lambda som, tmp_path: joblib.load(joblib.dump(som, tmp_path / "som.joblib")[0]),
    ],
    ids=["pickle", "joblib"],
)
def test_round_trips_predict_identically(blobs, round_trip, tmp_path):
    som = KerDenSOM(3, 3, kernel="student_t", standardize=True, random_state=0).fit(blobs)
    restored = round_trip(som, tmp_path)
    np.testing.assert_array_equal(restored.predict(blobs), som.predict(blobs))
    np.testing.assert_array_equal(restored.predict_proba(blobs), som.predict_proba(blobs))
    np.testing.assert_array_equal(restored.score_samples(blobs), som.score_samples(blobs))


def test_clone_refits_identically(blobs):
    som = KerDenSOM(3, 3, random_state=0).fit(blobs)
    cloned = clone(som)
    assert not hasattr(cloned, "cluster_centers_")
    np.testing.assert_array_equal(cloned.fit(blobs).predict(blobs), som.predict(blobs))
