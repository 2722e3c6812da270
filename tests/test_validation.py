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
