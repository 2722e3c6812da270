"""A fit does not depend on where the data sit or on their units, and predictions on what was fitted.

Distances are translation invariant and the model is equivariant to a change of units: a constant
offset changes nothing, and scaling the data scales the map (and the width by the square). These held
only near the origin and near unit scale before the internal frame centred and scaled the data (an
offset of 1e4 in float32 gave a width at its floor, 1e-30 put every sample in node 0).
"""

import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.exceptions import ConvergenceWarning

from sklearn_kerdensom import KerDenSOM
from sklearn_kerdensom.metrics import quantization_error, u_matrix


def four_clusters(dtype, grid=1 / 16):
    """200 x 10 samples in four clusters, on a grid of ``grid`` so that offsets up to 1e6 add exactly in
    float32 (its spacing at 1e6 is 1/16)."""
    rng = np.random.default_rng(0)
    centres = rng.normal(scale=5.0, size=(4, 10))
    X = np.concatenate([centre + rng.normal(size=(50, 10)) for centre in centres])
    return (np.round(X / grid) * grid).astype(dtype)


def fit(X, **params):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return KerDenSOM(3, 3, random_state=0, annealing_steps=2, max_iter=100, **params).fit(X)


def assert_same_map(shifted_or_scaled, reference, offset=0.0, scale=1.0, rtol=1e-5):
    """The two fits are the same map, up to the offset and scale of their data."""
    np.testing.assert_array_equal(shifted_or_scaled.labels_, reference.labels_)
    expected_centers = reference.cluster_centers_.astype(np.float64) * scale + offset
    spread = np.ptp(reference.cluster_centers_) * abs(scale)
    # cluster_centers_ are in the data's dtype: at an offset they round to its spacing there.
    rounding = np.finfo(shifted_or_scaled.cluster_centers_.dtype).eps * abs(offset)
    np.testing.assert_allclose(
        shifted_or_scaled.cluster_centers_, expected_centers, rtol=0, atol=rtol * spread + rounding
    )
    assert shifted_or_scaled.sigma_ == pytest.approx(reference.sigma_ * scale**2, rel=rtol)
    assert shifted_or_scaled.converged_ == reference.converged_


@pytest.mark.parametrize("offset", [1e4, 1e5, 1e6, -3e5])
def test_float32_offset_changes_nothing(offset):
    # On main: offset 1e4 gave sigma 7.0 (not 14.5) and 22 % of the labels; 1e5 sigma at its floor.
    X = four_clusters(np.float32)
    assert_same_map(fit(X + np.float32(offset)), fit(X), offset=offset)


@pytest.mark.parametrize("offset", [1e7, 1e9])
def test_float64_offset_changes_nothing(offset):
    # On main: +1e7 put 150 of 200 samples in 2 nodes against 3, +1e9 everything in one node.
    X = four_clusters(np.float64)
    assert_same_map(fit(X + offset), fit(X), offset=offset, rtol=1e-6)


def test_uint16_stack_with_offset_fits_like_its_centred_values():
    # Real stacks are stored as uint16 with +32768 and read as float32 (load_particles). On main the
    # width came out 2.5x too large and the labels differed.
    X = four_clusters(np.float32, grid=1.0) * 40
    stored = (X + 32768).astype(np.uint16)
    assert_same_map(fit(stored.astype(np.float32)), fit(X), offset=32768)


@pytest.mark.parametrize("scale", [1e-30, 2.0**-100, 1e19, 1e30])
def test_float32_extreme_scales(scale):
    # On main: 1e-30 put every sample in node 0; 1e19 and 1e30 raised LinAlgError.
    X = four_clusters(np.float32)
    assert_same_map(fit((X * scale).astype(np.float32)), fit(X), scale=scale, rtol=1e-4)


@pytest.mark.parametrize("scale", [1e-120, 1e120])
def test_float64_extreme_scales(scale):
    X = four_clusters(np.float64)
    assert_same_map(fit(X * scale), fit(X), scale=scale, rtol=1e-6)


@pytest.mark.parametrize("scale, message", [(1e200, "too large"), (1e-200, "too small")])
def test_variance_out_of_float64_range_is_a_clear_error(scale, message):
    # On main: 1e200 raised a bare LinAlgError, 1e-200 returned a map of one class.
    with pytest.raises(ValueError, match=f"X is {message} to fit.*Rescale X"):
        fit(four_clusters(np.float64) * scale)


def test_scaled_fit_reports_everything_in_the_units_of_the_data():
    X = four_clusters(np.float32)
    reference, scaled = fit(X), fit((X * 2.0**-110).astype(np.float32))
    scale = 2.0**-110
    assert scaled.score(X * scale) == pytest.approx(reference.score(X) - X.shape[1] * math.log(scale))
    assert quantization_error(scaled, X * scale) == pytest.approx(quantization_error(reference, X) * scale)
    np.testing.assert_allclose(u_matrix(scaled), u_matrix(reference) * scale, rtol=1e-6)
    np.testing.assert_allclose(scaled.transform(X * scale), reference.transform(X) * scale, rtol=1e-5)
    for step, reference_step in zip(scaled.annealing_history_, reference.annealing_history_, strict=True):
        assert step["sigma"] == pytest.approx(reference_step["sigma"] * scale**2)
        n_terms = X.size * math.log(scale)
        assert step["objective"] == pytest.approx(reference_step["objective"] + n_terms, rel=1e-9)


@settings(max_examples=15, deadline=None)
@given(dtype=st.sampled_from([np.float32, np.float64]), sixteenths=st.integers(-16_000_000, 16_000_000))
def test_property_offset_invariance(dtype, sixteenths):
    """The fit of ``X + c`` is the fit of ``X`` moved by ``c``, for ``|c|`` up to 1e6 (a multiple of 1/16,
    so that ``X + c`` is exact in float32)."""
    X = four_clusters(dtype)
    offset = sixteenths / 16
    # In float32 the products of X and of X + c round differently (X + c is centred only when c exceeds
    # the spread), and a step stops within tol of its fixed point, not on it: about 1e-5 of the spread.
    rtol = 1e-4 if dtype is np.float32 else 1e-6
    assert_same_map(fit(X + dtype(offset)), fit(X), offset=offset, rtol=rtol)


@settings(max_examples=15, deadline=None)
@given(dtype=st.sampled_from([np.float32, np.float64]), data=st.data())
def test_property_scale_equivariance(dtype, data):
    """The fit of ``2**k X`` is ``2**k`` times the fit of ``X`` over the whole range where the dtype holds
    ``2**k X`` (float32: 2**-100 to 2**100) and float64 the kernel variance (float64: 2**-460 to 2**460).

    Powers of two scale the data exactly; other factors round them, which can move a sample that sits
    on a tie between two near-identical code vectors (the decimal cases above check those).
    """
    largest = 100 if dtype is np.float32 else 460
    scale = 2.0 ** data.draw(st.integers(-largest, largest))
    X = four_clusters(dtype)
    assert_same_map(fit((X * scale).astype(dtype)), fit(X), scale=scale, rtol=1e-5)


# ---------------------------------------------------------------------------------------------------
# Predictions use the fitted state only.


@pytest.mark.parametrize(
    "params",
    [
        {"kernel": "student_t"},
        {"objective": "xmipp"},
        {"n_columns": 4},
        {"n_rows": 2, "topology": "hex"},
        {"df": 1.0},
    ],
)
def test_set_params_after_fit_does_not_change_predictions(params):
    # On main: kernel= and objective= changed score/predict_proba, n_columns= broke them (broadcast error).
    from sklearn_kerdensom.metrics import topographic_error

    X = four_clusters(np.float64)
    som = fit(X)
    before = {
        "predict": som.predict(X),
        "proba": som.predict_proba(X),
        "transform": som.transform(X),
        "score": som.score_samples(X),
        "topographic": topographic_error(som, X),
        "u_matrix": u_matrix(som),
    }
    som.set_params(**params)
    np.testing.assert_array_equal(som.predict(X), before["predict"])
    np.testing.assert_array_equal(som.predict_proba(X), before["proba"])
    np.testing.assert_array_equal(som.transform(X), before["transform"])
    np.testing.assert_array_equal(som.score_samples(X), before["score"])
    assert topographic_error(som, X) == before["topographic"]
    np.testing.assert_array_equal(u_matrix(som), before["u_matrix"])


def test_student_t_at_large_df_is_the_gaussian():
    # On main: df=1e17 scored +40.7 against the Gaussian's -23.0 (gammaln of 5e16 cancelled to 256).
    X = four_clusters(np.float64)
    gaussian = fit(X)
    for df in (1e8, 1e17, 1e30):
        student = fit(X, kernel="student_t", df=df)
        assert student.score(X) == pytest.approx(gaussian.score(X), abs=1e-6)
