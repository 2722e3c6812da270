import numpy as np
import pytest

from sklearn_kerdensom import KerDenSOM, quantization_error, topographic_error, u_matrix


@pytest.fixture
def som(blobs):
    return KerDenSOM(4, 3, reg_initial=10, reg_final=1, random_state=0).fit(blobs)


def test_quantization_error_is_mean_distance_to_nearest(som, blobs):
    distances = np.sqrt(((blobs[:, None] - som.cluster_centers_[None]) ** 2).sum(-1))
    assert quantization_error(som, blobs) == pytest.approx(distances.min(axis=1).mean())


def test_topographic_error(som, blobs):
    distances = ((blobs[:, None] - som.cluster_centers_[None]) ** 2).sum(-1)
    first, second = np.argsort(distances, axis=1)[:, :2].T
    positions = som.node_positions_
    grid_distance = np.abs(positions[first] - positions[second]).sum(axis=1)
    assert topographic_error(som, blobs) == pytest.approx(np.mean(grid_distance != 1))
    assert 0 <= topographic_error(som, blobs) <= 1


def test_topographic_error_of_a_single_node(blobs):
    assert topographic_error(KerDenSOM(1, 1).fit(blobs), blobs) == 0.0


def test_rect_u_matrix(som):
    centers = som.cluster_centers_
    umatrix = u_matrix(som)
    assert umatrix.shape == (3, 4)
    # corner node 0 has neighbours 1 and 4
    expected = (np.linalg.norm(centers[0] - centers[1]) + np.linalg.norm(centers[0] - centers[4])) / 2
    assert umatrix[0, 0] == pytest.approx(expected)


def test_hex_u_matrix(blobs):
    som = KerDenSOM(3, 3, topology="hex", reg_initial=10, reg_final=1, random_state=0).fit(blobs)
    centers = som.cluster_centers_
    # node 4 (row 1, odd, column 1) has all six neighbours 3, 5, 1, 2, 7, 8
    expected = np.mean([np.linalg.norm(centers[4] - centers[n]) for n in (3, 5, 1, 2, 7, 8)])
    assert u_matrix(som)[1, 1] == pytest.approx(expected)


def test_u_matrix_of_a_single_node(blobs):
    np.testing.assert_array_equal(u_matrix(KerDenSOM(1, 1).fit(blobs)), [[0.0]])


def test_scorers_take_a_pipeline_and_held_out_images():
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import make_pipeline

    from sklearn_kerdensom import MaskVectorizer, circular_mask
    from sklearn_kerdensom.datasets import make_adk_states
    from sklearn_kerdensom.metrics import quantization_scorer, topographic_scorer

    images = make_adk_states(20, snr=0.5, binning=2, random_state=0).images
    mask = circular_mask(images.shape[1:], 12)
    pipeline = make_pipeline(MaskVectorizer(mask), KerDenSOM(3, 3, max_iter=20, random_state=0)).fit(images)
    vectors = pipeline[0].transform(images)
    assert quantization_scorer(pipeline, images) == -quantization_error(pipeline[-1], vectors)
    assert topographic_scorer(pipeline, images) == -topographic_error(pipeline[-1], vectors)
    assert quantization_scorer(pipeline[-1], vectors) == -quantization_error(pipeline[-1], vectors)
    search = GridSearchCV(
        pipeline,
        {"kerdensom__n_columns": [1, 3], "kerdensom__n_rows": [1]},
        scoring={"quantization": quantization_scorer, "topographic": topographic_scorer},
        refit="quantization",
        cv=2,
    ).fit(images)
    # A node per state quantizes three states better than one node for all: that map is chosen, and every
    # score is a finite minus error.
    assert search.best_params_ == {"kerdensom__n_columns": 3, "kerdensom__n_rows": 1}
    assert np.all(np.isfinite(search.cv_results_["mean_test_topographic"]))
    assert np.all(search.cv_results_["mean_test_topographic"] <= 0)


def test_the_measures_take_a_pipeline_or_an_averager_and_name_what_they_cannot_take():
    """They took a bare KerDenSOM only: the README's pipelines and averagers gave AttributeError
    ('_samples'), and so did another clusterer (found by an API trial)."""
    from sklearn.cluster import KMeans
    from sklearn.pipeline import make_pipeline

    from sklearn_kerdensom import ClassAverager, MaskVectorizer, circular_mask
    from sklearn_kerdensom.datasets import make_adk_states
    from sklearn_kerdensom.metrics import quantization_scorer

    images = make_adk_states(10, snr=0.5, binning=2, random_state=0).images
    mask = circular_mask(images.shape[1:], 12)
    averager = ClassAverager(
        make_pipeline(MaskVectorizer(mask), KerDenSOM(3, 2, max_iter=20, random_state=0))
    ).fit(images)
    pipeline = averager.estimator_
    som, vectors = pipeline[-1], pipeline[0].transform(images)
    for estimator in (pipeline, averager):
        assert quantization_error(estimator, images) == quantization_error(som, vectors)
        assert topographic_error(estimator, images) == topographic_error(som, vectors)
        assert quantization_scorer(estimator, images) == -quantization_error(som, vectors)
        np.testing.assert_array_equal(u_matrix(estimator), u_matrix(som))
    kmeans = KMeans(3, n_init=1, random_state=0).fit(vectors)
    for measure in (lambda: quantization_error(kmeans, vectors), lambda: u_matrix(kmeans)):
        with pytest.raises(TypeError, match="need a fitted KerDenSOM, a Pipeline ending in one, or a Class"):
            measure()
    with pytest.raises(ValueError, match="X has 7 features, but KerDenSOM is expecting"):
        topographic_error(KerDenSOM(1, 1).fit(vectors), np.zeros((2, 7)))  # checked on one node too


def test_position_correlation_of_a_value_laid_out_along_the_map_and_of_one_it_ignores():
    from sklearn_kerdensom.metrics import position_correlation

    rng = np.random.default_rng(0)
    positions = rng.integers(0, 7, size=(500, 2)).astype(float)
    assert position_correlation(positions, 2 * positions[:, 0] - positions[:, 1] + 3) == pytest.approx(1.0)
    assert position_correlation(positions, rng.normal(size=500)) < 0.2
    assert np.isnan(position_correlation(np.zeros((10, 2)), rng.normal(size=10)))  # one node
    with pytest.raises(ValueError, match=r"shape \(n, 2\)"):
        position_correlation(positions, np.zeros(3))


def test_position_correlation_does_not_depend_on_the_scale_and_refuses_nan():
    """NaN values gave NaN, and values scaled by 1e-300 or 1e300 too (API trial)."""
    from sklearn_kerdensom.metrics import position_correlation

    rng = np.random.default_rng(0)
    positions = rng.integers(0, 7, (500, 2)).astype(float)
    values = positions[:, 0] + rng.normal(size=500)
    r = position_correlation(positions, values)
    assert 0.5 < r < 1
    for scale in (1e-300, 1e300):
        assert position_correlation(positions, values * scale) == pytest.approx(r, rel=1e-12)
    for bad in (np.nan, np.inf):
        with pytest.raises(ValueError, match="must be finite numbers"):
            position_correlation(positions, np.r_[values[:-1], bad])
