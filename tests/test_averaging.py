"""Images in, classes out: MaskVectorizer + KerDenSOM in ClassAverager, Pipeline and GridSearchCV."""

import pickle

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.cluster import KMeans
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.utils.estimator_checks import parametrize_with_checks

from sklearn_kerdensom import ClassAverager, KerDenSOM, MaskVectorizer, circular_mask, class_averages
from sklearn_kerdensom.datasets import make_adk_states


@pytest.fixture(scope="module")
def adk_states():
    """600 simulated particles (64 x 64 px, SNR 0.1, CTF phase-flipped): 200 per AdK state."""
    return make_adk_states(200, snr=0.1, random_state=0)


@pytest.fixture(scope="module")
def small_adk_states():
    """150 particles binned to 32 x 32 px, for the cross-validation tests."""
    return make_adk_states(50, snr=0.2, binning=2, random_state=1)


def map_pipeline(size, **params):
    return make_pipeline(
        MaskVectorizer(circular_mask((size, size), 0.4 * size)), KerDenSOM(random_state=0, **params)
    )


def test_class_averages():
    rng = np.random.default_rng(0)
    images = rng.normal(size=(10, 4, 5)).astype(np.float32)
    labels = np.array([0, 2, 2, 0, 0, 2, 2, 2, 0, 0])
    averages, counts = class_averages(images, labels, n_classes=4)
    assert averages.shape == (4, 4, 5) and averages.dtype == np.float32
    np.testing.assert_array_equal(counts, [5, 0, 5, 0])
    np.testing.assert_allclose(averages[0], images[labels == 0].mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(averages[2], images[labels == 2].mean(axis=0), rtol=1e-6)
    np.testing.assert_array_equal(averages[[1, 3]], 0)
    with pytest.raises(ValueError, match=r"labels must be in 0 \.\. 1"):
        class_averages(images, labels, n_classes=2)
    with pytest.raises(ValueError, match="labels must be 10 integers"):
        class_averages(images, labels[:3])


def test_adk_states_land_in_different_map_regions(adk_states):
    averager = ClassAverager(map_pipeline(64, n_columns=5, n_rows=5)).fit(adk_states.images)
    assert averager.averages_.shape == (25, 64, 64)
    assert averager.averages_.dtype == np.float32
    assert averager.counts_.sum() == 600
    # Where each state's particles sit on the map.
    positions = averager.node_positions_[averager.labels_]
    centroids = np.array([positions[adk_states.state == s].mean(axis=0) for s in range(3)])
    separations = np.linalg.norm(centroids[:, None] - centroids[None], axis=-1)
    assert separations[np.triu_indices(3, 1)].min() > 2.0
    # Every non-empty class is (almost) pure: one state per map region.
    occupied = np.flatnonzero(averager.counts_)
    purity = [
        np.bincount(adk_states.state[averager.labels_ == c]).max() / averager.counts_[c] for c in occupied
    ]
    assert np.average(purity, weights=averager.counts_[occupied]) > 0.95
    # The averages are the means of the unmasked member images.
    biggest = np.argmax(averager.counts_)
    np.testing.assert_allclose(
        averager.averages_[biggest],
        adk_states.images[averager.labels_ == biggest].mean(axis=0),
        rtol=1e-4,
        atol=1e-5,
    )


def test_representatives_come_back_through_the_mask(adk_states):
    mask = circular_mask((64, 64), 26)
    pipeline = make_pipeline(MaskVectorizer(mask), KerDenSOM(3, 3, random_state=0))
    averager = ClassAverager(pipeline).fit(adk_states.images)
    representatives = averager.representatives_
    assert representatives.shape == (9, 64, 64)
    np.testing.assert_array_equal(representatives[:, ~mask], 0)
    np.testing.assert_allclose(representatives[:, mask], averager.estimator_[-1].cluster_centers_, rtol=1e-6)
    np.testing.assert_array_equal(averager.predict(adk_states.images), averager.labels_)
    assert averager.score(adk_states.images) == pytest.approx(
        pipeline.fit(adk_states.images).score(adk_states.images)
    )


def test_soft_mask_weights_that_vanish_in_float32_give_no_nan_representatives():
    images = np.random.default_rng(0).normal(size=(60, 16, 16)).astype(np.float32)
    mask = circular_mask((16, 16), 5, soft_edge=3)
    # The outer ring of the soft edge weighted 1e-50: 0 once the float32 images are weighted.
    tiny = (mask > 0) & (mask < 0.3)
    mask[tiny] = 1e-50
    pipeline = make_pipeline(
        MaskVectorizer(mask), KerDenSOM(3, 3, random_state=0, max_iter=20, annealing_steps=2)
    )
    representatives = ClassAverager(pipeline).fit(images).representatives_
    assert representatives.dtype == np.float32
    assert not np.isnan(representatives).any()
    # The weighting left nothing of these pixels to bring back: they are 0, as outside the mask.
    np.testing.assert_array_equal(representatives[:, tiny], 0)
    assert np.all(representatives[:, mask >= 0.3].any(axis=0))


def test_plain_clusterer_and_empty_classes():
    rng = np.random.default_rng(0)
    images = np.concatenate([rng.normal(size=(20, 6, 6)), rng.normal(size=(20, 6, 6)) + 5])
    averager = ClassAverager(KerDenSOM(4, 4, random_state=0)).fit(images)
    assert averager.averages_.shape == (16, 6, 6) and averager.averages_.dtype == np.float64
    empty = averager.counts_ == 0
    assert empty.any()
    np.testing.assert_array_equal(averager.averages_[empty], 0)
    assert averager.representatives_.shape == (16, 6, 6)
    # any scikit-learn clusterer works
    kmeans = ClassAverager(KMeans(2, n_init=2, random_state=0)).fit(images.reshape(40, -1))
    assert kmeans.averages_.shape == (2, 36)
    assert sorted(kmeans.counts_) == [20, 20]


def test_grid_search_over_map_size_and_regularization(small_adk_states):
    search = GridSearchCV(
        ClassAverager(map_pipeline(32, max_iter=50)),
        {
            "estimator__kerdensom__n_columns": [2, 3],
            "estimator__kerdensom__n_rows": [2],
            "estimator__kerdensom__reg_final": [20.0, 200.0],
        },
        cv=3,
        n_jobs=2,
    )
    search.fit(small_adk_states.images)
    scores = search.cv_results_["mean_test_score"]
    assert len(scores) == 4 and np.all(np.isfinite(scores))
    assert (
        search.best_estimator_.averages_.shape[0]
        == search.best_params_["estimator__kerdensom__n_columns"] * 2
    )


def test_grid_search_on_the_pipeline(small_adk_states):
    vectors_pipeline = map_pipeline(32, max_iter=50)
    search = GridSearchCV(vectors_pipeline, {"kerdensom__n_columns": [2, 3]}, cv=2)
    search.fit(small_adk_states.images)
    assert search.best_params_["kerdensom__n_columns"] in (2, 3)


def test_clone_and_pickle_of_the_whole_pipeline(small_adk_states):
    averager = ClassAverager(map_pipeline(32, n_columns=3, n_rows=2)).fit(small_adk_states.images)
    restored = pickle.loads(pickle.dumps(averager))
    np.testing.assert_array_equal(restored.predict(small_adk_states.images), averager.labels_)
    np.testing.assert_array_equal(restored.averages_, averager.averages_)
    refitted = clone(averager).fit(small_adk_states.images)
    np.testing.assert_array_equal(refitted.labels_, averager.labels_)


def _expected_failures(estimator):
    # As for KerDenSOM: empty map nodes leave gaps in the labels.
    return {"check_clustering": "empty map nodes give non-contiguous labels"}


@parametrize_with_checks(
    [ClassAverager(KerDenSOM(2, 2, max_iter=20)), ClassAverager(KMeans(3, n_init=2, random_state=0))],
    expected_failed_checks=lambda estimator: (
        _expected_failures(estimator) if isinstance(estimator.estimator, KerDenSOM) else {}
    ),
)
def test_sklearn_compatible(estimator, check):
    check(estimator)


def test_wiener_averages_restore_what_the_ctfs_damped():
    from sklearn_kerdensom.averaging import wiener_class_averages
    from sklearn_kerdensom.ctf import contrast_transfer
    from sklearn_kerdensom.datasets import simulated_ctf

    # One projection seen at 12 defoci, noise-free and phase-flipped: |CTF| P in Fourier space.
    rng = np.random.default_rng(0)
    projection = rng.normal(size=(32, 32))
    defocus = np.linspace(1.0, 2.5, 12)
    ctf = simulated_ctf(defocus)
    transfer = np.abs(contrast_transfer((32, 32), 2.4, ctf))
    images = np.fft.irfft2(np.fft.rfft2(projection) * transfer, s=(32, 32))
    labels = np.zeros(12, dtype=int)
    plain = images.mean(axis=0)
    wiener, counts = wiener_class_averages(images, labels, ctf, 2.4, n_classes=2, constant=1e-9)
    np.testing.assert_allclose(wiener[0], projection, atol=1e-6 * np.abs(projection).max())
    assert np.abs(plain - projection).max() > 0.1 * np.abs(projection).max()
    assert counts.tolist() == [12, 0] and not wiener[1].any()


def test_averaging_functions_name_bad_labels_and_parameters():
    """NaN averages, an IndexError or a silently short result before (API trial)."""
    import pandas as pd

    from sklearn_kerdensom.averaging import mean_per_class, wiener_class_averages

    images = np.random.default_rng(0).normal(size=(4, 8, 8))
    table = pd.DataFrame(
        {"rlnDefocusU": 1e4, "rlnVoltage": 300.0, "rlnSphericalAberration": 2.7, "rlnAmplitudeContrast": 0.1},
        index=range(4),
    )
    labels = np.array([0, 1, 1, 0])
    averages, counts = wiener_class_averages(images, labels, table, 2.0)  # a table, as PhaseFlipper takes
    assert averages.shape == (2, 8, 8) and np.all(np.isfinite(averages)) and counts.tolist() == [2, 2]
    for kwargs, message in [
        ({"pixel_size": np.nan}, "'pixel_size' parameter"),
        ({"constant": -1.0}, "'constant' parameter"),
        (
            {"labels": np.array([0, 1, 1, -1])},
            r"labels must be class numbers from 0; got -1 \(a clusterer's noise label",
        ),
        ({"labels": labels.astype(float)}, "labels must be 4 integers"),
        ({"n_classes": 1}, r"labels must be in 0 \.\. 0"),
    ]:
        arguments = {"images": images, "labels": labels, "ctf": table, "pixel_size": 2.0, **kwargs}
        with pytest.raises(ValueError, match=message):
            wiener_class_averages(**arguments)
    with pytest.raises(ValueError, match=r"labels must be in 0 \.\. 1; got 0 \.\. 5"):
        mean_per_class(np.arange(6.0), np.arange(6), n_classes=2)


def test_a_class_averager_needs_a_clusterer():
    from sklearn.cluster import DBSCAN
    from sklearn.preprocessing import StandardScaler

    images = np.random.default_rng(0).normal(size=(6, 4, 4))
    with pytest.raises(ValueError, match=r"needs a clusterer .* StandardScaler gives no classes"):
        ClassAverager(StandardScaler()).fit(images)
    with pytest.raises(ValueError, match="noise label -1 is no class"):
        ClassAverager(DBSCAN(eps=0.1)).fit(images)  # every image noise
