import numpy as np
import pytest

from sklearn_kerdensom.alignment import apply_alignment


def reference_function(x, y):
    """An asymmetric test particle: three Gaussian blobs (no rotational or mirror symmetry)."""
    blobs = [(0.0, 0.0, 3.0, 1.0), (7.0, 0.0, 2.0, 0.8), (0.0, -10.0, 2.5, 0.6)]
    return sum(a * np.exp(-((x - bx) ** 2 + (y - by) ** 2) / (2 * s**2)) for bx, by, s, a in blobs)


def grid(size):
    index = np.arange(size) - size // 2
    y, x = np.meshgrid(index, index, indexing="ij")  # rows are y, columns are x
    return x.astype(float), y.astype(float)


def observe(size, shift, psi, mirror=False):
    """RELION's forward model: O(r) = R(F E^T (r + t)), E the in-plane Euler matrix of psi."""
    x, y = grid(size)
    c, s = np.cos(np.deg2rad(psi)), np.sin(np.deg2rad(psi))
    xs, ys = x + shift[0], y + shift[1]
    # E^T = [[c, -s], [s, c]]
    xr, yr = c * xs - s * ys, s * xs + c * ys
    if mirror:
        xr = -xr
    return reference_function(xr, yr)


def correlation(a, b, mask):
    return np.corrcoef(a[mask], b[mask])[0, 1]


def test_positive_origin_x_puts_the_particle_left_of_centre():
    image = observe(64, shift=(6.0, 0.0), psi=0.0)
    row, column = np.unravel_index(np.argmax(image), image.shape)
    assert (row, column) == (32, 32 - 6)


@pytest.mark.parametrize("size", [64, 65])
@pytest.mark.parametrize(
    "shift, psi, mirror",
    [
        ((0, 0), 0, False),
        ((5.5, -3.25), 0, False),
        ((0, 0), 37.0, False),
        ((4.0, 2.5), 123.0, False),
        ((-3.0, 6.0), 250.0, True),
        ((0, 0), 0, True),
        ((2.0, 0.0), -40.0, True),
    ],
)
def test_round_trip_recovers_the_reference(size, shift, psi, mirror):
    reference = reference_function(*grid(size))
    observed = observe(size, shift, psi, mirror)[None].astype(np.float32)
    aligned = apply_alignment(observed, [shift], [psi], mirror=[mirror])
    assert aligned.dtype == np.float32
    x, y = grid(size)
    mask = x**2 + y**2 <= (0.4 * size) ** 2
    assert correlation(aligned[0], reference, mask) > 0.99
    np.testing.assert_allclose(aligned[0][mask], reference[mask], atol=0.03)


def test_identity_copies_without_interpolation():
    rng = np.random.default_rng(0)
    images = rng.normal(size=(3, 16, 16))
    aligned = apply_alignment(images, np.zeros((3, 2)), [0.0, 360.0, 0.0])
    np.testing.assert_array_equal(aligned, images)


def test_periodic_borders():
    image = np.zeros((1, 8, 8))
    image[0, 4, 0] = 1.0
    # a whole-pixel shift wraps the first column around to the last
    aligned = apply_alignment(image, [[-1.0, 0.0]], [0.0])
    assert aligned[0, 4, 7] == pytest.approx(1.0)


def test_input_is_not_modified():
    images = np.random.default_rng(0).normal(size=(2, 10, 10))
    before = images.copy()
    apply_alignment(images, [[1.0, 2.0], [0.5, 0.0]], [10.0, 20.0], mirror=[True, False])
    np.testing.assert_array_equal(images, before)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"images": np.zeros((4, 4))}, "shape"),
        ({"shifts": np.zeros((2, 3))}, "shifts must have shape"),
        ({"psi": np.zeros(3)}, "psi must have shape"),
        ({"mirror": [True]}, "mirror must have shape"),
        ({"shifts": [[np.nan, 0.0], [0.0, 0.0]]}, "shifts contain NaN"),
        ({"images": np.full((2, 4, 4), np.nan)}, "NaN"),
        # Strings are all true as booleans ("False" mirrored every image), 0.5 too (API trial).
        ({"mirror": np.array(["False", "False"])}, "mirror must be booleans"),
        ({"mirror": [0.5, 0.0]}, "mirror must be booleans"),
        ({"images": np.ones((2, 4, 4), dtype=complex)}, "images must hold real numbers"),
    ],
)
def test_bad_input(kwargs, message):
    arguments = {"images": np.zeros((2, 4, 4)), "shifts": np.zeros((2, 2)), "psi": np.zeros(2)}
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=message):
        apply_alignment(**arguments)


def test_threads_give_the_same_images():
    rng = np.random.default_rng(5)
    images = rng.normal(size=(9, 17, 17)).astype(np.float32)
    shifts, psi = rng.normal(size=(9, 2)), rng.uniform(0.0, 360.0, 9)
    mirror = rng.uniform(size=9) < 0.5
    one = apply_alignment(images, shifts, psi, mirror)
    np.testing.assert_array_equal(apply_alignment(images, shifts, psi, mirror, n_jobs=3), one)
    np.testing.assert_array_equal(apply_alignment(images, shifts, psi, mirror, n_jobs=-1), one)
