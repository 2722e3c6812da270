"""The simulated sets carry their ground truth: clean images, path coordinate, states."""

import itertools

import numpy as np
import pytest

from sklearn_kerdensom.datasets import make_adk_mixed, make_adk_path, make_adk_states, make_adk_views


@pytest.mark.parametrize(
    "make",
    [
        lambda: make_adk_states(20, snr=0.5, binning=2, random_state=0),
        lambda: make_adk_path(60, snr=0.5, binning=2, random_state=0),
        lambda: make_adk_views(60, snr=0.5, binning=2, random_state=0),
        lambda: make_adk_mixed(10, 30, snr=0.5, binning=2, random_state=0),
    ],
)
def test_clean_images_are_the_images_without_their_noise(make):
    data = make()
    assert data.clean_images.shape == data.images.shape
    assert data.path_coordinate.shape == data.state.shape == (len(data.images),)
    assert np.all((0 <= data.path_coordinate) & (data.path_coordinate <= 1))
    noise = (data.images - data.clean_images).reshape(len(data.images), -1)
    signal = data.clean_images.reshape(len(data.images), -1)
    # White noise at SNR 0.5 (before phase flipping, which keeps its variance): variance ratio 2.
    assert np.var(noise) / np.mean(np.var(signal, axis=1)) == pytest.approx(2.0, rel=0.15)
    assert abs(np.corrcoef(noise.ravel(), signal.ravel())[0, 1]) < 0.05


def test_mixed_set_holds_states_and_path():
    data = make_adk_mixed(10, 30, binning=2, random_state=0)
    assert np.bincount(data.state + 1).tolist() == [30, 10, 10, 10]
    np.testing.assert_allclose(data.path_coordinate[data.state == 0], 0.0)
    np.testing.assert_allclose(data.path_coordinate[data.state == 2], 1.0)


def test_views_change_smoothly_along_the_path():
    data = make_adk_views(200, snr=1.0, binning=2, random_state=0)
    order = np.argsort(data.path_coordinate)
    clean = data.clean_images[order].reshape(len(order), -1)
    # Neighbours differ in defocus too (their CTFs), so compare them with the two ends of the path.
    neighbours = np.mean([np.corrcoef(a, b)[0, 1] for a, b in itertools.pairwise(clean)])
    ends = np.corrcoef(clean[0], clean[-1])[0, 1]
    assert neighbours > ends + 0.1


@pytest.mark.parametrize(
    "make, kwargs, message",
    [
        ("make_adk_states", {"n_per_state": 2.5}, "'n_per_state' parameter"),
        ("make_adk_states", {"n_per_state": -1}, "'n_per_state' parameter"),
        ("make_adk_path", {"n_samples": 4, "snr": np.nan}, "'snr' parameter"),
        ("make_adk_views", {"n_samples": 4, "binning": 0}, "'binning' parameter"),
        ("make_adk_mixed", {"n_per_state": 2, "n_path": 2, "binning": 2.0}, "'binning' parameter"),
    ],
)
def test_simulators_refuse_impossible_parameters(make, kwargs, message):
    """2.5 particles per state were accepted, NaN SNR gave NaN images, binning 0 divided by zero (API
    trial)."""
    import sklearn_kerdensom.datasets as datasets

    with pytest.raises(ValueError, match=message):
        getattr(datasets, make)(**kwargs)


def test_simulate_particles_refuses_nan_pixel_size_and_defocus():
    from sklearn_kerdensom.datasets import simulate_particles

    projections = np.ones((2, 8, 8))
    with pytest.raises(ValueError, match="'pixel_size' parameter"):
        simulate_particles(projections, pixel_size=np.nan)
    with pytest.raises(ValueError, match="defocus_range must be"):
        simulate_particles(projections, pixel_size=1.0, defocus_range=(np.nan, 2.0))
    with pytest.raises(ValueError, match="projections must be finite"):
        simulate_particles(np.full((2, 8, 8), np.nan), pixel_size=1.0)
