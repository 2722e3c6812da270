"""Bad input gets a clear error that names the problem."""

import numpy as np
import pytest

from sklearn_kerdensom import KerDenSOM


@pytest.mark.parametrize(
    "params, message",
    [
        ({"reg_initial": 100, "reg_final": 200}, "reg_initial=100 is smaller than reg_final=200"),
        ({"reg_initial": 0, "reg_final": 200}, "reg_initial=0 is smaller than reg_final=200"),
        ({"reg_initial": 100, "reg_final": 0}, "reg_final=0 with annealing_steps=5"),
        ({"df": 0}, "'df' parameter"),
        ({"df": -1.0}, "'df' parameter"),
        ({"n_rows": 0}, "'n_rows' parameter"),
        ({"reg_final": -1.0}, "'reg_final' parameter"),
        ({"annealing_steps": 0}, "'annealing_steps' parameter"),
        ({"max_iter": 0}, "'max_iter' parameter"),
        ({"topology": "square"}, "'topology' parameter"),
        ({"kernel": "cauchy"}, "'kernel' parameter"),
        ({"objective": "paper"}, "'objective' parameter"),
        ({"init": "kmeans"}, "'init' parameter"),
    ],
)
def test_impossible_parameters(blobs, params, message):
    with pytest.raises(ValueError, match=message):
        KerDenSOM(**{"n_columns": 2, "n_rows": 2, **params}).fit(blobs)


def test_equal_regularizations_are_a_constant_schedule(blobs):
    som = KerDenSOM(2, 2, reg_initial=50, reg_final=50, annealing_steps=3).fit(blobs)
    assert [step["regularization"] for step in som.annealing_history_] == pytest.approx([50] * 3)


def test_reg_final_zero_is_fine_with_one_step(blobs):
    som = KerDenSOM(2, 2, reg_initial=100, reg_final=0, annealing_steps=1).fit(blobs)
    assert som.annealing_history_[0]["regularization"] == 0


@pytest.mark.parametrize(
    "init, message",
    [
        (np.full((10, 4), 0.25), r"init has shape \(10, 4\).*\(120, 4\)"),
        (np.full((120, 3), 1 / 3), r"init has shape \(120, 3\).*\(120, 4\)"),
        (np.tile([1.5, -0.5, 0.0, 0.0], (120, 1)), "negative"),
        (np.full((120, 4), 0.3), "row 0 sums to 1.2"),
        (np.full((120, 4), np.nan), "NaN"),
    ],
)
def test_bad_initial_memberships(blobs, init, message):
    with pytest.raises(ValueError, match=message):
        KerDenSOM(2, 2, init=init).fit(blobs)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_data(blobs, bad):
    X = blobs.copy()
    X[3, 2] = bad
    with pytest.raises(ValueError, match=r"NaN|infinity"):
        KerDenSOM(2, 2).fit(X)
    som = KerDenSOM(2, 2).fit(blobs)
    for method in (som.predict, som.predict_proba, som.transform, som.score_samples):
        with pytest.raises(ValueError, match=r"NaN|infinity"):
            method(X)


def test_predict_with_another_number_of_features(blobs):
    som = KerDenSOM(2, 2).fit(blobs)
    for method in (som.predict, som.predict_proba, som.transform, som.score):
        with pytest.raises(ValueError, match="X has 9 features, but KerDenSOM is expecting 10"):
            method(blobs[:, :9])


def test_wrong_dimensions(blobs):
    with pytest.raises(ValueError, match=r"Expected a 2-dimensional container|2D array"):
        KerDenSOM(2, 2).fit(blobs[0])
    with pytest.raises(ValueError, match="3"):
        KerDenSOM(2, 2).fit(blobs.reshape(12, 10, 10))


def test_empty_data():
    with pytest.raises(ValueError, match="0 sample"):
        KerDenSOM(2, 2).fit(np.empty((0, 4)))


def test_predict_before_fit(blobs):
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        KerDenSOM().predict(blobs)


@pytest.mark.parametrize("name", ["n_columns", "n_rows", "annealing_steps", "max_iter"])
def test_boolean_counts_are_refused(blobs, name):
    # On main: n_columns=True was a map of one column.
    with pytest.raises(ValueError, match=f"'{name}' parameter.*not a bool.*Got True"):
        KerDenSOM(**{"n_columns": 2, "n_rows": 2, name: True}).fit(blobs)


def test_numpy_small_integer_map_sizes_do_not_overflow(blobs):
    # On main: np.int8(20) * np.int8(20) overflowed to -112 nodes.
    som = KerDenSOM(np.int8(20), np.int8(20), annealing_steps=1, max_iter=2).fit(blobs[:40])
    assert som.n_nodes == 400
    assert som.cluster_centers_.shape == (400, blobs.shape[1])
    assert som.predict_proba(blobs[:5]).shape == (5, 400)


def test_empty_initial_node_starts_at_the_data_mean(blobs):
    # The documented start of a node without initial memberships; on main it was the origin.
    from sklearn_kerdensom._frame import fit_frame
    from sklearn_kerdensom._initialization import from_memberships
    from sklearn_kerdensom._samples import samples_of

    memberships = np.zeros((len(blobs), 4))
    memberships[:, :3] = np.random.default_rng(0).dirichlet(np.ones(3), size=len(blobs))
    samples = samples_of(blobs, fit_frame(blobs, standardize=False), np.float64, 4)
    code_vectors, _ = from_memberships(samples, memberships, np.float64)
    np.testing.assert_allclose(code_vectors[3], blobs.mean(axis=0))
    assert not np.allclose(code_vectors[:3], blobs.mean(axis=0))


def test_bending_needs_the_likelihood_objective(blobs):
    with pytest.raises(ValueError, match="smoothness='bending' needs objective='likelihood'"):
        KerDenSOM(2, 2, smoothness="bending", objective="xmipp").fit(blobs)


def test_an_impossible_schedule_names_the_default_it_used(blobs):
    with pytest.raises(ValueError, match=r"reg_initial=1000.0: the default for smoothness='membrane'"):
        KerDenSOM(2, 2, smoothness="membrane", reg_final=5000).fit(blobs)


def test_subnormal_data(blobs):
    """Data of magnitude 1e-310: z-scores fit them; raw, their kernel variance would underflow float64,
    which the error says (a power of two of their exponent, 2**1030, is no Python float)."""
    tiny = blobs * 1e-310
    som = KerDenSOM(2, 2, standardize=True, random_state=0).fit(tiny)
    assert np.all(np.isfinite(som.cluster_centers_))
    with pytest.raises(ValueError, match="X is too small to fit"):
        KerDenSOM(2, 2).fit(tiny)


def test_all_zero_data_are_refused():
    """The width's floor follows the data's scale; all zeros have none, and a fit gave NaN memberships
    to any other sample (found by an API trial)."""
    with pytest.raises(ValueError, match="X is all zeros"):
        KerDenSOM(3, 3).fit(np.zeros((20, 4)))
    som = KerDenSOM(3, 3, random_state=0).fit(np.ones((20, 4)))  # identical samples: a floor of their scale
    assert np.all(np.isfinite(som.predict_proba(np.full((1, 4), 3.0))))


@pytest.mark.parametrize("kernel", ["gaussian", "student_t"])
@pytest.mark.parametrize("method", ["predict", "predict_proba", "transform", "score_samples", "score"])
def test_samples_too_far_from_the_map_are_an_error_not_nan(blobs, kernel, method):
    """Finite samples so far from the map that their squared distances overflow gave NaN memberships and
    scores, infinite distances and node 0 as every label (found by an API trial)."""
    som = KerDenSOM(3, 2, kernel=kernel, random_state=0).fit(blobs)
    far = np.full((2, blobs.shape[1]), 1e155)
    with pytest.raises(ValueError, match="X is too far from the fitted map"):
        getattr(som, method)(far)
    assert np.all(np.isfinite(getattr(som, method)(blobs * 1e3)))  # far, but within range: an answer
