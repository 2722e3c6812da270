"""Never NaN, monotone likelihood objective, image-sized vectors."""

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.exceptions import ConvergenceWarning

from sklearn_kerdensom import KerDenSOM

CONFIGURATIONS = [
    {"objective": "likelihood"},
    {"objective": "xmipp", "init": "random"},
    {"kernel": "student_t", "df": 3.0},
    {"kernel": "student_t", "objective": "xmipp", "init": "random"},
    {"topology": "hex", "standardize": True},
    {"reg_initial": 0, "reg_final": 0},
    {"reg_initial": 0, "reg_final": 0, "objective": "xmipp", "init": "random"},
]


def fit_quietly(som, X):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        # Any floating point warning (0 / 0, overflow to inf) is a failure.
        warnings.simplefilter("error", RuntimeWarning)
        return som.fit(X)


def assert_all_finite(som, X):
    assert np.all(np.isfinite(som.cluster_centers_))
    assert np.isfinite(som.sigma_) and som.sigma_ > 0
    for step in som.annealing_history_:
        assert np.isfinite(step["sigma"]) and np.isfinite(step["objective"])
        assert np.all(np.isfinite(step["objective_per_iteration"]))
    memberships = som.predict_proba(X)
    assert np.all(np.isfinite(memberships))
    np.testing.assert_allclose(memberships.sum(axis=1), 1.0, rtol=1e-5)
    assert np.all(np.isfinite(som.transform(X)))
    assert np.all(np.isfinite(som.score_samples(X)))
    assert np.all((som.labels_ >= 0) & (som.labels_ < som.n_nodes))


def two_tight_clusters(n_features=6, scale=1.0, offset=0.0):
    rng = np.random.default_rng(1)
    X = np.concatenate([rng.normal(0, 0.01, (15, n_features)), rng.normal(5, 0.01, (15, n_features))])
    return X * scale + offset


@pytest.mark.parametrize("params", CONFIGURATIONS)
@pytest.mark.parametrize(
    "case",
    ["empty_nodes", "one_sample", "duplicates", "constant_feature", "tiny", "huge", "offset"],
)
def test_degenerate_data_never_give_nan(params, case):
    X = two_tight_clusters()
    if case == "one_sample":
        X = X[:1]
    elif case == "duplicates":
        X = np.repeat(X[:3], 10, axis=0)
    elif case == "constant_feature":
        X[:, 2] = 7.0
    elif case == "tiny":
        X = X * 1e-6
    elif case == "huge":
        X = X * 1e6
    elif case == "offset":
        X = X + 1e4
    # a 5 x 5 map for two clusters: most nodes are empty
    som = fit_quietly(KerDenSOM(5, 5, max_iter=30, random_state=0, **params), X)
    assert_all_finite(som, X)


@pytest.mark.parametrize("params", CONFIGURATIONS[:5])
def test_image_sized_vectors_do_not_underflow(params):
    # 64 x 64 images: squared distances in the thousands of noise variances,
    # where plain exponentials of the kernels underflow to 0.
    rng = np.random.default_rng(0)
    signal = rng.normal(size=(2, 4096)).astype(np.float32)
    X = signal[rng.integers(0, 2, 60)] + rng.normal(size=(60, 4096)).astype(np.float32)
    som = fit_quietly(KerDenSOM(3, 3, annealing_steps=2, max_iter=20, random_state=0, **params), X)
    assert_all_finite(som, X)
    assert som.cluster_centers_.dtype == np.float32


def assert_monotone(som):
    for step in som.annealing_history_:
        objective = step["objective_per_iteration"]
        increases = np.diff(objective)
        assert np.all(increases <= 1e-9 * np.abs(objective[1:])), (step, increases.max())


@pytest.mark.parametrize("kernel", ["gaussian", "student_t"])
@pytest.mark.parametrize("topology", ["rect", "hex"])
def test_likelihood_objective_never_increases_within_a_step(blobs, kernel, topology):
    som = fit_quietly(KerDenSOM(4, 3, kernel=kernel, topology=topology, init="random", random_state=0), blobs)
    assert sum(step["n_iter"] for step in som.annealing_history_) > 10
    assert_monotone(som)


datasets = st.builds(
    lambda seed, n_samples, n_features, log_scale, n_duplicates: np.repeat(
        np.random.default_rng(seed).normal(size=(n_samples, n_features)) * 10.0**log_scale,
        n_duplicates,
        axis=0,
    ),
    seed=st.integers(0, 2**16),
    n_samples=st.integers(1, 25),
    n_features=st.integers(1, 8),
    log_scale=st.sampled_from([-6, 0, 6]),
    n_duplicates=st.integers(1, 3),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    X=datasets,
    n_columns=st.integers(1, 4),
    n_rows=st.integers(1, 3),
    params=st.sampled_from(CONFIGURATIONS),
    regularization=st.sampled_from([(0.0, 0.0), (10.0, 1.0), (1000.0, 200.0)]),
)
def test_property_no_nan(X, n_columns, n_rows, params, regularization):
    params = {"reg_initial": regularization[0], "reg_final": regularization[1], **params}
    som = fit_quietly(KerDenSOM(n_columns, n_rows, max_iter=20, random_state=0, **params), X)
    assert_all_finite(som, X)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    n_samples=st.integers(5, 60),
    n_features=st.integers(1, 12),
    kernel=st.sampled_from(["gaussian", "student_t"]),
    regularization=st.sampled_from([(0.0, 0.0), (10.0, 1.0), (1000.0, 200.0)]),
)
def test_property_likelihood_objective_monotone(seed, n_samples, n_features, kernel, regularization):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_samples, n_features)) + 3 * rng.integers(0, 3, (n_samples, 1))
    som = fit_quietly(
        KerDenSOM(
            3,
            2,
            kernel=kernel,
            reg_initial=regularization[0],
            reg_final=regularization[1],
            max_iter=40,
            init="random",
            random_state=seed,
        ),
        X,
    )
    assert_monotone(som)


@pytest.mark.parametrize("objective", ["likelihood", "xmipp"])
def test_chunking_does_not_change_the_fit(blobs, objective, monkeypatch):
    import sklearn_kerdensom._chunks as chunks

    whole = KerDenSOM(3, 3, objective=objective, random_state=0).fit(blobs)
    # 7-row chunks: the 120 samples go through every pass in 18 pieces.
    monkeypatch.setattr(chunks, "MAX_CHUNK_ROWS", 7)
    assert chunks.chunk_rows(blobs.shape[1], 9) == 7
    chunked = KerDenSOM(3, 3, objective=objective, random_state=0).fit(blobs)
    np.testing.assert_allclose(chunked.cluster_centers_, whole.cluster_centers_, rtol=1e-10, atol=1e-10)
    np.testing.assert_array_equal(chunked.labels_, whole.labels_)
    np.testing.assert_allclose(chunked.score_samples(blobs), whole.score_samples(blobs), rtol=1e-12)
