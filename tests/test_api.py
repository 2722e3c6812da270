"""Public methods and attributes of KerDenSOM, checked against direct formulas."""

import numpy as np
import pytest
from scipy import stats
from scipy.special import logsumexp

from sklearn_kerdensom import KerDenSOM


def brute_sq_distances(X, centers):
    return ((X[:, None, :].astype(np.float64) - centers[None].astype(np.float64)) ** 2).sum(-1)


def test_fitted_attributes(blobs):
    som = KerDenSOM(4, 3, random_state=0).fit(blobs)
    assert som.cluster_centers_.shape == (12, blobs.shape[1])
    assert som.labels_.shape == (len(blobs),)
    assert som.node_positions_.shape == (12, 2)
    assert som.n_features_in_ == blobs.shape[1]
    assert som.n_iter_ == sum(step["n_iter"] for step in som.annealing_history_)
    assert len(som.annealing_history_) == 5
    regularizations = [step["regularization"] for step in som.annealing_history_]
    np.testing.assert_allclose(regularizations, np.geomspace(1e4, 200, 5))
    assert som.smoothness_ == "bending"
    assert isinstance(som.converged_, bool)
    assert som.sigma_ > 0


@pytest.mark.parametrize(
    ("params", "smoothness", "first", "last"),
    [
        ({}, "bending", 1e4, 200),
        ({"objective": "xmipp"}, "membrane", 1000, 200),
        ({"smoothness": "membrane"}, "membrane", 1000, 200),
        ({"smoothness": "bending", "reg_final": 20}, "bending", 1e4, 20),
        ({"reg_initial": 300}, "bending", 300, 200),
    ],
)
def test_auto_rules_resolve_by_objective_and_smoothness(blobs, params, smoothness, first, last):
    som = KerDenSOM(2, 2, random_state=0, **params).fit(blobs)
    assert som.smoothness_ == smoothness
    regularizations = [step["regularization"] for step in som.annealing_history_]
    np.testing.assert_allclose(regularizations, np.geomspace(first, last, 5))
    # What the user gave stays as given (scikit-learn's clone and get_params rely on it).
    assert som.get_params()["smoothness"] == params.get("smoothness", "auto")
    assert som.get_params()["reg_final"] == params.get("reg_final")


def test_predict_is_nearest_code_vector_and_highest_membership(blobs):
    som = KerDenSOM(3, 3, random_state=0).fit(blobs)
    expected = np.argmin(brute_sq_distances(blobs, som.cluster_centers_), axis=1)
    np.testing.assert_array_equal(som.predict(blobs), expected)
    np.testing.assert_array_equal(som.labels_, expected)
    memberships = som.predict_proba(blobs)
    np.testing.assert_allclose(memberships.sum(axis=1), 1.0)
    np.testing.assert_array_equal(np.argmax(memberships, axis=1), expected)
    np.testing.assert_array_equal(som.fit_predict(blobs), som.labels_)


def test_transform_is_euclidean_distance(blobs):
    som = KerDenSOM(3, 2, random_state=0)
    distances = som.fit_transform(blobs)
    np.testing.assert_allclose(
        distances, np.sqrt(brute_sq_distances(blobs, som.cluster_centers_)), rtol=1e-7, atol=1e-7
    )


@pytest.mark.parametrize("objective", ["likelihood", "xmipp"])
def test_gaussian_score_samples_is_the_kernel_density(blobs, objective):
    som = KerDenSOM(3, 2, objective=objective, random_state=0).fit(blobs)
    n_features = blobs.shape[1]
    variance = som.sigma_ * (n_features if objective == "xmipp" else 1)
    log_kernels = np.column_stack(
        [
            stats.multivariate_normal(center, variance * np.eye(n_features)).logpdf(blobs)
            for center in som.cluster_centers_
        ]
    )
    expected = logsumexp(log_kernels, axis=1) - np.log(som.n_nodes)
    np.testing.assert_allclose(som.score_samples(blobs), expected, rtol=1e-9)
    assert som.score(blobs) == pytest.approx(expected.mean())


def test_student_t_score_samples_is_the_kernel_density(blobs):
    som = KerDenSOM(3, 2, kernel="student_t", df=4.0, random_state=0).fit(blobs)
    n_features = blobs.shape[1]
    log_kernels = np.column_stack(
        [
            stats.multivariate_t(center, som.sigma_ * np.eye(n_features), df=4.0).logpdf(blobs)
            for center in som.cluster_centers_
        ]
    )
    expected = logsumexp(log_kernels, axis=1) - np.log(som.n_nodes)
    np.testing.assert_allclose(som.score_samples(blobs), expected, rtol=1e-9)


def test_standardize_maps_code_vectors_back_and_scores_raw_units(blobs):
    scales = np.geomspace(1e-3, 1e3, blobs.shape[1])
    X = blobs * scales + 50.0
    som = KerDenSOM(3, 2, standardize=True, random_state=0).fit(X)
    reference = KerDenSOM(3, 2, random_state=0).fit((X - X.mean(0)) / X.std(0, ddof=1))
    np.testing.assert_allclose(
        som.cluster_centers_,
        reference.cluster_centers_ * X.std(0, ddof=1) + X.mean(0),
        rtol=1e-6,
        atol=1e-8,
    )
    np.testing.assert_array_equal(som.labels_, reference.labels_)
    # The density of raw X includes the Jacobian of the standardization.
    jacobian = -np.sum(np.log(X.std(0, ddof=1)))
    np.testing.assert_allclose(
        som.score_samples(X), reference.score_samples((X - X.mean(0)) / X.std(0, ddof=1)) + jacobian
    )


def test_float32_is_kept_float32(blobs):
    X = blobs.astype(np.float32)
    som = KerDenSOM(3, 2, reg_initial=10, reg_final=1, random_state=0).fit(X)
    assert som.cluster_centers_.dtype == np.float32
    assert som.transform(X).dtype == np.float32
    assert som.predict_proba(X).dtype == np.float32
    som64 = KerDenSOM(3, 2, reg_initial=10, reg_final=1, random_state=0).fit(blobs)
    assert som64.cluster_centers_.dtype == np.float64
    np.testing.assert_allclose(som.cluster_centers_, som64.cluster_centers_, rtol=1e-4, atol=1e-4)
    # Labels agree except for near-ties, where float32 rounding decides.
    distances = np.sort(som64.transform(blobs), axis=1)
    clear = distances[:, 1] - distances[:, 0] > 1e-5 * distances[:, 0]
    assert clear.mean() > 0.9
    np.testing.assert_array_equal(som.labels_[clear], som64.labels_[clear])


def test_integer_input_is_converted(blobs):
    X = np.round(blobs * 10).astype(np.int32)
    som = KerDenSOM(3, 2, random_state=0).fit(X)
    assert som.cluster_centers_.dtype == np.float64


def test_hex_node_positions(blobs):
    som = KerDenSOM(3, 2, topology="hex", random_state=0).fit(blobs)
    np.testing.assert_array_equal(som.node_positions_[:, 0], [0, 1, 2, 0.5, 1.5, 2.5])
    np.testing.assert_array_equal(som.node_positions_[:, 1], [0, 0, 0, 1, 1, 1])


def test_kernel_c_means_is_one_unregularized_step(blobs):
    som = KerDenSOM(3, 1, reg_initial=0, reg_final=0, random_state=0).fit(blobs)
    assert [step["regularization"] for step in som.annealing_history_] == [0.0]
    # three blobs, three nodes: each node takes one blob
    assert sorted(np.bincount(som.labels_)) == [40, 40, 40]


def test_single_step_uses_reg_final(blobs):
    som = KerDenSOM(2, 2, reg_initial=1000, reg_final=30, annealing_steps=1).fit(blobs)
    assert [step["regularization"] for step in som.annealing_history_] == [30.0]


def test_regularization_smooths_the_map(blobs):
    def roughness(som):
        return np.sum(np.diff(som.cluster_centers_.reshape(1, 6, -1), axis=1) ** 2)

    smooth = KerDenSOM(6, 1, reg_initial=1e4, reg_final=1e4, random_state=0).fit(blobs)
    rough = KerDenSOM(6, 1, reg_initial=1, reg_final=1, random_state=0).fit(blobs)
    assert roughness(smooth) < roughness(rough)


def test_one_dimensional_map_orders_a_curve():
    # Samples along a curve in 5-D: a 1-D map must lay them out in order.
    t = np.linspace(0, 1, 200)
    X = np.column_stack([np.cos(3 * t), np.sin(3 * t), t, t**2, np.zeros_like(t)])
    som = KerDenSOM(8, 1, reg_initial=10, reg_final=1, random_state=0).fit(X)
    correlation = abs(stats.spearmanr(t, som.labels_).statistic)
    assert correlation > 0.97


def test_verbose_reports_each_step(blobs, capsys):
    KerDenSOM(2, 2, annealing_steps=3, verbose=1, random_state=0).fit(blobs)
    lines = [line for line in capsys.readouterr().out.splitlines() if "step" in line]
    assert len(lines) == 3
    assert "regularization=" in lines[0] and "sigma=" in lines[0] and "iterations=" in lines[0]


def test_convergence_warning(blobs):
    from sklearn.exceptions import ConvergenceWarning

    with pytest.warns(ConvergenceWarning, match="max_iter"):
        som = KerDenSOM(3, 3, max_iter=1, random_state=0).fit(blobs)
    assert not som.converged_


def test_feature_names_out(blobs):
    som = KerDenSOM(2, 2, random_state=0).fit(blobs)
    assert list(som.get_feature_names_out()) == [f"kerdensom{i}" for i in range(4)]


def test_user_data_are_not_modified(blobs):
    X = blobs.copy()
    init = np.full((len(X), 4), 0.25)
    KerDenSOM(2, 2, init=init, standardize=True).fit(X)
    np.testing.assert_array_equal(X, blobs)
    np.testing.assert_array_equal(init, 0.25)


def test_a_capped_early_step_warns_and_is_recorded(blobs):
    # On main: only the last step was checked, so a first step capped at max_iter said converged_ = True
    # without a warning.
    from sklearn.exceptions import ConvergenceWarning

    with pytest.warns(ConvergenceWarning) as record:
        som = KerDenSOM(3, 3, annealing_steps=3, max_iter=20, random_state=0).fit(blobs)
    capped = [number for number, step in enumerate(som.annealing_history_, 1) if not step["converged"]]
    assert capped[0] == 1
    assert all(som.annealing_history_[number - 1]["n_iter"] == 20 for number in capped)
    message = str(record[0].message)
    assert message.startswith(f"Annealing step {', '.join(map(str, capped))} of 3 stopped at max_iter=20")
    assert "tol=1e-07" in message
    assert not som.converged_


def test_middle_steps_stop_at_annealing_tol(blobs):
    tight = KerDenSOM(3, 3, annealing_tol=1e-7, random_state=0).fit(blobs)
    loose = KerDenSOM(3, 3, annealing_tol=1e-3, random_state=0).fit(blobs)
    steps = len(tight.annealing_history_)
    assert tight.converged_ and loose.converged_
    # The first step is held to tol either way.
    assert loose.annealing_history_[0]["n_iter"] == tight.annealing_history_[0]["n_iter"]
    assert sum(step["n_iter"] for step in loose.annealing_history_[1:-1]) < sum(
        step["n_iter"] for step in tight.annealing_history_[1:-1]
    )
    # So is the last: both land on the same map.
    assert steps == len(loose.annealing_history_)
    np.testing.assert_allclose(loose.cluster_centers_, tight.cluster_centers_, atol=1e-3)
    np.testing.assert_array_equal(loose.labels_, tight.labels_)


def test_xmipp_steps_all_stop_at_tol():
    som = KerDenSOM(3, 2, objective="xmipp", random_state=0)
    assert som._step_tols([10.0, 5.0, 1.0]) == [1e-7, 1e-7, 1e-7]
    som.set_params(objective="likelihood")
    assert som._step_tols([10.0, 5.0, 2.0, 1.0]) == [1e-7, 1e-5, 1e-5, 1e-7]
    assert som._step_tols([1.0]) == [1e-7]
    assert som.set_params(annealing_tol=1e-3)._step_tols([10.0, 5.0, 1.0]) == [1e-7, 1e-3, 1e-7]


def test_fit_progress_is_reported_to_a_context_callback_only():
    from sklearn_kerdensom._progress import reporting

    X = np.random.default_rng(0).normal(size=(60, 5))
    calls = []
    with reporting(lambda *where: calls.append(where)):
        som = KerDenSOM(3, 2, annealing_steps=3, max_iter=25, random_state=0).fit(X)
    steps = [step for step, *_ in calls]
    assert steps == sorted(steps) and set(steps) == {0, 1, 2}
    for step in range(3):
        in_step = [call for call in calls if call[0] == step]
        assert [call[2] for call in in_step] == list(range(1, len(in_step) + 1))
        assert in_step[-1][4] and not any(call[4] for call in in_step[:-1])  # done once, at the end
        assert all(call[1] == 3 and call[3] == 25 for call in in_step)
    assert len(calls) == som.n_iter_
    calls.clear()
    KerDenSOM(3, 2, annealing_steps=2, max_iter=5, random_state=0).fit(X)
    assert calls == []  # outside the block, nothing is reported


def test_the_default_map_uses_its_interior_on_an_evenly_spread_data_set():
    # A square of data in 20 dimensions: a map that covers it evenly has a particle in every node.
    rng = np.random.default_rng(0)
    latent = rng.uniform(-1, 1, size=(500, 2))
    X = latent @ rng.normal(size=(2, 20)) + 0.05 * rng.normal(size=(500, 20))
    counts = np.bincount(KerDenSOM(5, 5, random_state=0).fit(X).labels_, minlength=25).reshape(5, 5)
    assert counts.min() > 0
    # Xmipp's membrane pulls the sheet together and leaves interior nodes empty on the same data.
    membrane = KerDenSOM(5, 5, smoothness="membrane", random_state=0).fit(X)
    interior = np.bincount(membrane.labels_, minlength=25).reshape(5, 5)[1:-1, 1:-1]
    assert (interior == 0).any()
