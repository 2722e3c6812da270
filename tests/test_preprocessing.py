"""Fourier cropping, low-pass filtering and background normalization (sklearn_kerdensom.preprocessing)."""

import numpy as np
import pytest
from sklearn.base import clone

from sklearn_kerdensom.preprocessing import (
    BackgroundNormalizer,
    FourierCropper,
    LowPassFilter,
    fourier_crop,
    low_pass,
    normalize_background,
)


def _waves(size, cycles, n=3, phase=0.3):
    """Images of a plane wave of ``cycles`` periods across the box along x, sampled on ``size`` pixels."""
    x = np.arange(size) / size
    wave = np.cos(2 * np.pi * cycles * x + phase)
    return np.broadcast_to(wave, (n, size, size)).astype(np.float64)


def test_fourier_cropping_samples_a_band_limited_image_on_the_coarser_grid():
    # A wave of 5 periods on 64 px, cropped to 32 px, is the same wave sampled on 32 px: exactly.
    np.testing.assert_allclose(fourier_crop(_waves(64, 5), 32), _waves(32, 5), atol=1e-12)
    np.testing.assert_allclose(fourier_crop(np.full((2, 64, 64), 3.5), 20), 3.5, atol=1e-12)
    # Odd sizes too.
    np.testing.assert_allclose(fourier_crop(_waves(63, 4), 21), _waves(21, 4), atol=1e-12)


def test_fourier_cropping_removes_what_the_coarser_grid_cannot_hold_instead_of_aliasing_it():
    # 20 periods cannot be sampled on 32 px (at most 16): striding would alias them to 12 periods.
    strided = _waves(64, 20)[:, ::2, ::2]
    assert np.abs(strided).max() > 0.9
    np.testing.assert_allclose(fourier_crop(_waves(64, 20), 32), 0.0, atol=1e-12)


def test_low_pass_keeps_coarse_detail_and_removes_fine_detail():
    pixel_size, size = 2.0, 64
    coarse = _waves(size, 2)  # a period of 64 Å
    fine = _waves(size, 20)  # a period of 6.4 Å
    filtered = low_pass(coarse + fine, pixel_size, resolution=20.0)
    np.testing.assert_allclose(filtered, coarse, atol=1e-12)
    with pytest.raises(ValueError, match="finer than the Nyquist limit"):
        LowPassFilter(resolution=3.0, pixel_size=2.0).fit(coarse)


def test_background_normalization_gives_mean_0_and_std_1_outside_the_circle():
    rng = np.random.default_rng(0)
    images = rng.normal(5.0, 3.0, size=(4, 40, 40)).astype(np.float32)
    normalized = normalize_background(images, 15)
    rows, columns = np.indices((40, 40))
    background = np.hypot(rows - 20, columns - 20) > 15
    np.testing.assert_allclose(normalized[:, background].mean(axis=1), 0.0, atol=1e-5)
    np.testing.assert_allclose(normalized[:, background].std(axis=1), 1.0, atol=1e-5)
    assert normalized.dtype == np.float32
    # RELION's default background circle: a diameter of 75 % of the box.
    assert BackgroundNormalizer().fit(images).radius_ == 15.0
    with pytest.raises(ValueError, match="fewer than 2 pixels; give a smaller radius"):
        BackgroundNormalizer(radius=40).fit(images)
    with pytest.raises(ValueError, match="constant background"):
        normalize_background(np.ones((1, 40, 40)), 15)


@pytest.mark.parametrize(
    "transformer, shape",
    [
        (FourierCropper(box=16), (16, 16)),
        (LowPassFilter(resolution=10.0, pixel_size=2.0), (32, 32)),
        (BackgroundNormalizer(radius=10), (32, 32)),
    ],
)
def test_image_transformers_on_arrays_memory_maps_and_dask_arrays(transformer, shape, tmp_path):
    da = pytest.importorskip("dask.array")
    images = np.random.default_rng(1).normal(size=(9, 32, 32)).astype(np.float32)
    before = images.copy()
    expected = clone(transformer).fit_transform(images)
    np.testing.assert_array_equal(images, before)  # never modified
    assert expected.shape == (9, *shape) and expected.dtype == np.float32
    np.save(tmp_path / "images.npy", images)
    mapped = clone(transformer).fit_transform(np.load(tmp_path / "images.npy", mmap_mode="r"))
    assert isinstance(mapped, np.memmap)
    np.testing.assert_array_equal(mapped, expected)
    lazy = clone(transformer).fit_transform(da.from_array(images, chunks=(4, -1, -1)))
    np.testing.assert_allclose(lazy.compute(), expected, atol=1e-6)
    with pytest.raises(ValueError, match="was fitted on"):
        clone(transformer).fit(images).transform(images[:, :30, :30])


def test_image_transformer_errors_name_the_problem():
    images = np.zeros((2, 32, 32))
    with pytest.raises(ValueError, match="larger than the 32 px images"):
        FourierCropper(box=64).fit(images)
    with pytest.raises(ValueError, match="needs square images"):
        FourierCropper(box=8).fit(np.zeros((2, 32, 30)))
    with pytest.raises(ValueError, match="'box' parameter"):
        FourierCropper(box=0).fit(images)
    with pytest.raises(ValueError, match=r"shape \(n_images, height, width\)"):
        FourierCropper(box=8).fit(images.reshape(2, -1))
    with pytest.raises(ValueError, match="NaN"):
        LowPassFilter().fit(np.full((1, 8, 8), np.nan))


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda images: fourier_crop(images, 40), "larger than the 32 px images"),
        (lambda images: fourier_crop(images[:, :, :30], 8), "needs square images"),
        (lambda images: fourier_crop(images, 8.5), "'box' parameter of fourier_crop"),
        (lambda images: fourier_crop(images[0], 8), r"shape \(n_images, height, width\)"),
        (lambda images: fourier_crop(np.full_like(images, np.nan), 8), "NaN"),
        (lambda images: low_pass(images, 1.0, 4.0, edge_width=0.0), "'edge_width' parameter of low_pass"),
        (lambda images: low_pass(images, 1.0, np.nan), "'resolution' parameter of low_pass"),
        (lambda images: low_pass(images, -1.0, 4.0), "'pixel_size' parameter of low_pass"),
        (lambda images: low_pass(images, 4.0, 5.0), "finer than the Nyquist limit"),
        (lambda images: normalize_background(np.full_like(images, np.nan), 10), "NaN"),
        (lambda images: normalize_background(images, np.nan), "'radius' parameter of normalize_background"),
    ],
)
def test_image_functions_check_their_input_as_the_transformers_do(call, message):
    """The functions returned wrong rows, NaN or zeros for what their transformers refuse (API trial)."""
    images = np.random.default_rng(0).normal(size=(2, 32, 32))
    before = images.copy()
    with pytest.raises(ValueError, match=message):
        call(images)
    np.testing.assert_array_equal(images, before)


def test_classify_downsamples_filters_and_normalizes_real_particles(tmp_path):
    import json

    import mrcfile

    from .test_cli import PARTICLES, kerdensom

    star = PARTICLES / "relion31.star"  # 5 real particles of 256 px, 2.806 Å
    small_map = ["--columns", "2", "--rows", "1", "--steps", "2", "--max-iter", "20"]
    code, stdout, stderr = kerdensom(
        "classify", star, "--mask-radius", "100", "--box", "64", "--lowpass", "30", "--normalize", *small_map,
        "--out", tmp_path / "out",
    )  # fmt: skip
    assert code == 0, stderr
    assert (
        "preprocessed (FourierCropper, LowPassFilter, BackgroundNormalizer): 64 x 64 px, 11.2 Å/px" in stdout
    )
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["image_shape"] == [64, 64] and summary["pixel_size"] == pytest.approx(2.806 * 4)
    # --mask-radius is in the input's pixels: 100 of 256 px is 25 of 64.
    assert summary["mask_pixels"] == np.count_nonzero(np.hypot(*np.indices((64, 64)) - 32) <= 25)
    with mrcfile.open(tmp_path / "out" / "averages.mrcs") as averages:
        assert averages.data.shape == (2, 64, 64)
        assert averages.voxel_size.x == pytest.approx(2.806 * 4, rel=1e-5)

    # Impossible settings stop the run before any particle is read, naming the flag.
    for flags, message in [
        (["--box", "512"], "--box 512 is larger than the 256 px particles"),
        (["--box", "64", "--lowpass", "15"], "--lowpass 15 Å is finer than the Nyquist limit"),
    ]:
        code, stdout, stderr = kerdensom(
            "classify", star, "--mask-radius", "100", *flags, "--out", tmp_path / "bad"
        )  # fmt: skip
        assert code == 1 and message in stderr and "read 5 particles" not in stdout
        assert not (tmp_path / "bad").exists()
