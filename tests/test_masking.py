import numpy as np
import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

from sklearn_kerdensom import MaskVectorizer, circular_mask


@pytest.fixture
def images():
    return np.random.default_rng(0).normal(size=(5, 8, 10)).astype(np.float32)


def test_circular_mask():
    mask = circular_mask((9, 9), 2)
    assert mask.dtype == bool
    assert mask[4, 4] and mask[4, 6] and not mask[4, 7] and not mask[0, 0]
    assert mask.sum() == 13
    soft = circular_mask((32, 32), 8, soft_edge=4)
    assert soft[16, 16] == 1.0 and soft[16, 16 + 8] == 1.0 and soft[16, 16 + 12] == 0.0
    assert 0 < soft[16, 16 + 10] < 1
    assert soft.min() >= 0 and soft.max() <= 1


@pytest.mark.parametrize(
    "args, message",
    [
        (((8, 8), 0), "radius"),
        (((8, 8), 3, -1), "soft_edge"),
        (((8,), 3), "shape"),
        ((8, 3), r"shape must be \(height, width\), two sizes in pixels; got 8"),  # no len() (API trial)
        (((8.5, 8), 3), "positive integer sizes"),
        (((0, 8), 3), "positive integer sizes"),
        (((8, 8), np.nan), "radius must be a finite number of pixels; got nan"),
        (((8, 8), np.inf), "radius must be a finite number of pixels; got inf"),
        (((8, 8), 3, np.nan), "soft_edge must be a finite number of pixels; got nan"),
        (((8, 8), 3, np.inf), "soft_edge must be a finite number of pixels; got inf"),
    ],
)
def test_circular_mask_errors(args, message):
    with pytest.raises(ValueError, match=message):
        circular_mask(*args)


def test_one_image_instead_of_a_stack_is_named():
    with pytest.raises(ValueError, match=r"one image of that shape is a stack of one: X\[None\]"):
        MaskVectorizer(np.ones((8, 8), dtype=bool)).fit(np.zeros((8, 8)))


@pytest.mark.parametrize("image_shape", [(-8, -8), (8.7, 8), (64,)])
def test_an_impossible_image_shape_is_refused(image_shape):
    """(-8, -8) fitted 64-pixel vectors, then failed in inverse_transform; (8.7, 8) was truncated."""
    with pytest.raises(ValueError, match="image_shape must be"):
        MaskVectorizer(image_shape=image_shape).fit(np.zeros((2, 64)))


def test_boolean_mask_keeps_pixels_in_raster_order(images):
    mask = np.zeros((8, 10), dtype=bool)
    mask[2, 3] = mask[1, 7] = mask[5, 0] = True
    vectors = MaskVectorizer(mask).fit_transform(images)
    assert vectors.dtype == np.float32
    np.testing.assert_array_equal(vectors, images[:, [1, 2, 5], [7, 3, 0]])


def test_flattened_input_takes_the_mask_shape(images):
    mask = circular_mask((8, 10), 3)
    flat = images.reshape(5, -1)
    np.testing.assert_array_equal(
        MaskVectorizer(mask).fit_transform(flat), MaskVectorizer(mask).fit_transform(images)
    )
    vectors = MaskVectorizer(image_shape=(8, 10)).fit_transform(flat)
    np.testing.assert_array_equal(vectors, flat)


def test_inverse_transform_puts_zeros_outside_the_mask(images):
    mask = circular_mask((8, 10), 3)
    vectorizer = MaskVectorizer(mask).fit(images)
    restored = vectorizer.inverse_transform(vectorizer.transform(images))
    assert restored.shape == images.shape and restored.dtype == np.float32
    np.testing.assert_array_equal(restored[:, mask], images[:, mask])
    np.testing.assert_array_equal(restored[:, ~mask], 0)


def test_soft_mask_weights_pixels_and_drops_zero_weights(images):
    mask = np.zeros((8, 10))
    mask[1, 1], mask[2, 2], mask[3, 3] = 1.0, 0.5, 0.25
    vectorizer = MaskVectorizer(mask).fit(images)
    vectors = vectorizer.transform(images)
    np.testing.assert_allclose(vectors, images[:, [1, 2, 3], [1, 2, 3]] * [1.0, 0.5, 0.25])
    restored = vectorizer.inverse_transform(vectors)
    np.testing.assert_allclose(restored[:, [1, 2, 3], [1, 2, 3]], images[:, [1, 2, 3], [1, 2, 3]], rtol=1e-6)
    assert np.count_nonzero(restored[0]) == 3


def test_soft_mask_within_rounding_of_0_and_1_is_taken_as_0_and_1(images):
    mask = np.zeros((8, 10))
    mask[1, 1], mask[2, 2], mask[3, 3], mask[4, 4] = 1.0000001, 0.5, -1e-9, 1.0
    before = mask.copy()
    vectorizer = MaskVectorizer(mask).fit(images)
    np.testing.assert_array_equal(
        vectorizer.pixel_indices_, np.ravel_multi_index(([1, 2, 4], [1, 2, 4]), (8, 10))
    )
    np.testing.assert_array_equal(vectorizer.pixel_weights_, [1.0, 0.5, 1.0])
    np.testing.assert_array_equal(mask, before)


@pytest.mark.parametrize("value", [1.000002, -0.000002])
def test_mask_out_of_range_error_shows_the_values_in_full(images, value):
    mask = np.full((8, 10), 0.5)
    mask[0, 0] = value
    low, high = min(value, 0.5), max(value, 0.5)
    with pytest.raises(
        ValueError, match=rf"mask values must be in \[0, 1\]; got values from {low} to {high}\."
    ):
        MaskVectorizer(mask).fit(images)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_weights_that_vanish_in_the_images_dtype_give_zeros_not_nan(images, dtype):
    mask = np.zeros((8, 10))
    mask[1, 1], mask[2, 2], mask[3, 3] = 1.0, 1e-50, 1e-40  # 1e-50 is 0 in float32, 1e-40 subnormal
    images = images.astype(dtype)
    vectorizer = MaskVectorizer(mask).fit(images)
    restored = vectorizer.inverse_transform(vectorizer.transform(images))
    assert restored.dtype == dtype
    assert np.isfinite(restored).all()
    np.testing.assert_array_equal(restored[:, 1, 1], images[:, 1, 1])
    if dtype == np.float32:
        # Nothing of the pixel survives its weight in float32: 0, as outside the mask.
        np.testing.assert_array_equal(restored[:, 2, 2], 0)
        # A subnormal weight keeps the pixel, to float32's absolute precision there (1.4e-45 / 1e-40).
        np.testing.assert_allclose(restored[:, 3, 3], images[:, 3, 3], rtol=0, atol=1e-4)
    else:
        np.testing.assert_allclose(restored[:, [2, 3], [2, 3]], images[:, [2, 3], [2, 3]], rtol=1e-12)


def test_passthrough_without_mask_or_shape(images):
    flat = images.reshape(5, -1).astype(np.float64)
    vectorizer = MaskVectorizer().fit(flat)
    np.testing.assert_array_equal(vectorizer.transform(flat), flat)
    np.testing.assert_array_equal(vectorizer.inverse_transform(flat), flat)
    # 3-D input without a mask: every pixel, flattened
    assert MaskVectorizer().fit_transform(images).shape == (5, 80)


def test_feature_names(images):
    mask = np.zeros((8, 10), dtype=bool)
    mask[2, 3] = mask[1, 7] = True
    names = MaskVectorizer(mask).fit(images).get_feature_names_out()
    assert list(names) == ["pixel_1_7", "pixel_2_3"]


def test_input_not_modified(images):
    before = images.copy()
    MaskVectorizer(circular_mask((8, 10), 3, soft_edge=2)).fit_transform(images)
    np.testing.assert_array_equal(images, before)


@pytest.mark.parametrize(
    "mask, data, message",
    [
        (np.ones((8, 8), dtype=bool), None, r"mask has shape \(8, 8\), but the images have shape \(8, 10\)"),
        (np.zeros((8, 10), dtype=bool), None, "mask selects no pixel"),
        (np.full((8, 10), 2.0), None, r"mask values must be in \[0, 1\]"),
        (np.ones(80, dtype=bool), None, "mask must be a 2-D image"),
        (None, np.full((2, 8, 10), np.nan), "NaN"),
    ],
)
def test_errors(images, mask, data, message):
    with pytest.raises(ValueError, match=message):
        MaskVectorizer(mask).fit(images if data is None else data)


def test_transform_errors(images):
    vectorizer = MaskVectorizer(circular_mask((8, 10), 3)).fit(images)
    with pytest.raises(ValueError, match=r"images have shape \(10, 8\)"):
        vectorizer.transform(images.reshape(5, 10, 8))
    with pytest.raises(ValueError, match="vectors have 3 values"):
        vectorizer.inverse_transform(np.zeros((2, 3)))
    bad = images.copy()
    bad[0, 0, 0] = np.inf
    with pytest.raises(ValueError, match="infinity"):
        vectorizer.transform(bad)
    with pytest.raises(ValueError, match="does not match the image shape"):
        MaskVectorizer(image_shape=(9, 9)).fit(images.reshape(5, -1))


@parametrize_with_checks([MaskVectorizer()])
def test_sklearn_compatible(estimator, check):
    check(estimator)
