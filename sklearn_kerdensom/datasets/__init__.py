"""Simulated particle images of adenylate kinase (AdK), from density maps shipped with the package.

The maps (``data/adk_maps.npz``, provenance and licence in ``data/README.md``)
are electron-scattering densities of closed AdK, open AdK and nine frames of a
closed -> open transition path. Particles are in-plane aligned projections of
one view, with a CTF at several defoci and white noise at a given SNR, so the
only variability left is conformational: discrete (three states) or
continuous (the path).
"""

from importlib import resources
from numbers import Integral, Real

import numpy as np
from scipy import ndimage
from sklearn.utils import Bunch, check_random_state
from sklearn.utils._param_validation import Interval, validate_params

from ..ctf import CTFParameters, contrast_transfer

# The microscope of every simulated particle: 300 kV, Cs 2.7 mm, amplitude contrast 0.1.
MICROSCOPE = {"voltage": 300.0, "spherical_aberration": 2.7, "amplitude_contrast": 0.1}

STATE_NAMES = ("closed", "intermediate", "open")
_STATE_MAPS = ("adk_closed_1AKE", "adk_dims_frame49", "adk_open_4AKE")
_PATH_FRAMES = 97

# Projecting along x shows the LID and NMP domains closing over the core most clearly.
DEFAULT_VIEW = np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]])


def load_adk_maps():
    """The AdK density maps.

    Returns
    -------
    maps : Bunch
        ``volumes`` (11, 64, 64, 64) float32, axes (z, y, x), unit standard
        deviation; ``names`` (11,); ``voxel_size`` in Å (1.2); ``path_frames``:
        the frame number (0 .. 97) of each map on the closed -> open path,
        with closed = 0 and open = 97.
    """
    with resources.files(__package__).joinpath("data/adk_maps.npz").open("rb") as stream:
        archive = np.load(stream)
        volumes = archive["maps"].astype(np.float32)
        names = [str(name) for name in archive["names"]]
        voxel_size = float(archive["voxel_size"])
    frames = [0 if "closed" in n else _PATH_FRAMES if "open" in n else int(n[-2:]) for n in names]
    return Bunch(volumes=volumes, names=names, voxel_size=voxel_size, path_frames=np.array(frames))


def project(volumes, rotation=None):
    """Projections of volumes along their first axis after a rotation about the centre.

    Parameters
    ----------
    volumes : ndarray of shape (n_volumes, size, size, size)
    rotation : ndarray of shape (3, 3), default=None
        Maps output (z, y, x) voxel coordinates, relative to the centre voxel
        ``size // 2``, to input coordinates. None: :data:`DEFAULT_VIEW`.

    Returns
    -------
    projections : ndarray of shape (n_volumes, size, size), float64
    """
    rotation = DEFAULT_VIEW if rotation is None else np.asarray(rotation, dtype=np.float64)
    volumes = np.asarray(volumes)
    centre = np.array(volumes.shape[1:], dtype=np.float64) // 2
    offset = centre - rotation @ centre
    return np.stack(
        [
            ndimage.affine_transform(volume.astype(np.float64), rotation, offset=offset, order=1).sum(axis=0)
            for volume in volumes
        ]
    )


def _bin(images, factor):
    if factor == 1:
        return images
    n, height, width = images.shape
    height, width = height // factor * factor, width // factor * factor
    images = images[:, :height, :width]
    return images.reshape(n, height // factor, factor, width // factor, factor).mean(axis=(2, 4))


@validate_params(
    {
        "projections": ["array-like"],
        "pixel_size": [Interval(Real, 0, None, closed="neither")],
        "defocus_range": ["array-like"],
        "snr": [Interval(Real, 0, None, closed="neither")],
        "phase_flip": ["boolean", Interval(Integral, 0, 1, closed="both")],
        "random_state": ["random_state"],
        "return_clean": ["boolean"],
    },
    prefer_skip_nested_validation=True,
)
def simulate_particles(
    projections,
    *,
    pixel_size,
    defocus_range=(1.0, 2.5),
    snr=0.1,
    phase_flip=True,
    random_state=None,
    return_clean=False,
):
    """Particle images from clean projections: CTF at random defoci, white noise, phase flipping.

    The CTF is :func:`sklearn_kerdensom.ctf.contrast_transfer` (RELION's) of a 300 kV microscope with
    Cs 2.7 mm and amplitude contrast 0.1, without astigmatism.

    Parameters
    ----------
    projections : ndarray of shape (n_images, height, width)
        One clean projection per particle.
    pixel_size : float
        Å per pixel.
    defocus_range : (float, float), default=(1.0, 2.5)
        Defoci are drawn uniformly in this range, in micrometres.
    snr : float, default=0.1
        Signal-to-noise ratio: noise variance = mean variance of the CTF-modulated
        projections / snr.
    phase_flip : bool, default=True
        Flip the phases where the CTF is negative, as one does before
        classifying particles of several defoci.
    random_state : int, RandomState instance or None
    return_clean : bool, default=False
        Also return the noise-free images.

    Returns
    -------
    images : ndarray of shape (n_images, height, width), float32
    defocus : ndarray of shape (n_images,)
        Defocus of every particle, in micrometres.
    clean : ndarray of shape (n_images, height, width), float32
        Only with ``return_clean``: each image without its noise (the
        CTF-modulated projection, phase-flipped as the image is), the ground
        truth a class average estimates.
    """
    low, high = (float(value) for value in defocus_range) if len(defocus_range) == 2 else (np.nan, np.nan)
    if not (np.isfinite([low, high]).all() and 0 < low <= high):
        raise ValueError(
            f"defocus_range must be (low, high) micrometres, 0 < low <= high; got {defocus_range}."
        )
    random_state = check_random_state(random_state)
    projections = np.asarray(projections)
    if projections.ndim != 3 or not np.all(np.isfinite(projections)):
        raise ValueError("projections must be finite images of shape (n_images, height, width).")
    shape = projections.shape[1:]
    defocus = random_state.uniform(low, high, size=len(projections))
    parameters = simulated_ctf(defocus)
    # Batches keep the complex FFT stacks small whatever the number of particles.
    batches = [slice(start, start + 500) for start in range(0, len(projections), 500)]
    signal = np.empty(projections.shape, dtype=np.float32)
    for rows in batches:
        transfer = contrast_transfer(shape, pixel_size, parameters.subset(rows))
        signal[rows] = np.fft.irfft2(np.fft.rfft2(projections[rows]) * transfer, s=shape)
    noise_sd = np.sqrt(signal.var(axis=(1, 2), dtype=np.float64).mean() / snr)
    clean = np.empty_like(signal) if return_clean else None
    images = signal
    for rows in batches:
        flips = None
        if phase_flip:
            flips = np.where(contrast_transfer(shape, pixel_size, parameters.subset(rows)) < 0, -1.0, 1.0)
        if return_clean:
            clean[rows] = (
                images[rows] if flips is None else np.fft.irfft2(np.fft.rfft2(images[rows]) * flips, s=shape)
            )
        noisy = images[rows] + random_state.normal(scale=noise_sd, size=images[rows].shape)
        if phase_flip:
            noisy = np.fft.irfft2(np.fft.rfft2(noisy) * flips, s=shape)
        images[rows] = noisy
    if return_clean:
        return images, defocus, clean
    return images, defocus


def simulated_ctf(defocus):
    """The :class:`~sklearn_kerdensom.ctf.CTFParameters` of simulated particles of ``defocus`` (µm)."""
    return CTFParameters(
        defocus_u=np.asarray(defocus) * 1e4,
        defocus_v=np.asarray(defocus) * 1e4,
        defocus_angle=0.0,
        **MICROSCOPE,
    )


def _particle_set(projections, pixel_size, snr, phase_flip, random_state, **ground_truth):
    """The Bunch of a simulated set: noisy and clean images, defoci, pixel size and ``ground_truth``."""
    images, defocus, clean = simulate_particles(
        projections,
        pixel_size=pixel_size,
        snr=snr,
        phase_flip=phase_flip,
        random_state=random_state,
        return_clean=True,
    )
    return Bunch(
        images=images,
        clean_images=clean,
        defocus=defocus,
        ctf=simulated_ctf(defocus),
        pixel_size=pixel_size,
        **ground_truth,
    )


def _interpolated(clean, knots, coordinate):
    """Projections at ``coordinate`` in [0, 1], linear between the ``clean`` projections at ``knots``
    (increasing, from 0 to 1): projection is linear, so the projections are interpolated."""
    position = np.interp(coordinate, knots, np.arange(len(knots)))
    lower = np.minimum(np.floor(position).astype(int), len(knots) - 2)
    weight = (position - lower)[:, None, None]
    return (1 - weight) * clean[lower] + weight * clean[lower + 1]


def _path_set(clean, knots, pixel_size, n_samples, snr, phase_flip, random_state):
    """Particles at uniform random places of a path of ``clean`` projections at ``knots``."""
    coordinate = random_state.uniform(size=n_samples)
    return _particle_set(
        _interpolated(clean, knots, coordinate),
        pixel_size,
        snr,
        phase_flip,
        random_state,
        path_coordinate=coordinate,
        state=np.full(n_samples, -1),
    )


# The parameters every simulated set shares, as validate_params checks them.
_SET_CONSTRAINTS = {
    "snr": [Interval(Real, 0, None, closed="neither")],
    "binning": [Interval(Integral, 1, 16, closed="both")],
    "phase_flip": ["boolean", Interval(Integral, 0, 1, closed="both")],
    "random_state": ["random_state"],
}
_COUNT = [Interval(Integral, 1, None, closed="left")]


def _state_projections(binning):
    maps = load_adk_maps()
    volumes = np.stack([maps.volumes[maps.names.index(name)] for name in _STATE_MAPS])
    frames = np.array([maps.path_frames[maps.names.index(name)] for name in _STATE_MAPS])
    return _bin(project(volumes), binning), frames / _PATH_FRAMES, maps.voxel_size * binning


def _path_projections(binning):
    maps = load_adk_maps()
    on_path = np.flatnonzero(["dims" in name for name in maps.names])
    knots = maps.path_frames[on_path] / _PATH_FRAMES
    return _bin(project(maps.volumes[on_path]), binning), knots, maps.voxel_size * binning


@validate_params(
    {
        "n_per_state": _COUNT,
        **_SET_CONSTRAINTS,
    },
    prefer_skip_nested_validation=True,
)
def make_adk_states(n_per_state=200, *, snr=0.1, binning=1, phase_flip=True, random_state=None):
    """Particles of three discrete AdK conformations: closed, intermediate (path frame 49) and open.

    Parameters
    ----------
    n_per_state : int, default=200
    snr : float, default=0.1
    binning : int, default=1
        Average ``binning x binning`` pixels (64 px at 1.2 Å becomes 32 px at
        2.4 Å with 2); 1 to 16.
    phase_flip : bool, default=True
    random_state : int, RandomState instance or None

    Returns
    -------
    data : Bunch
        ``images`` (3 * n_per_state, size, size) float32, shuffled;
        ``clean_images`` (the same without noise); ``state`` (0 closed,
        1 intermediate, 2 open); ``state_names``; ``path_coordinate`` (each
        state's place on the closed -> open path: 0, 49/97, 1); ``defocus``
        (µm); ``ctf`` (the particles' :class:`~sklearn_kerdensom.ctf.CTFParameters`,
        for :class:`~sklearn_kerdensom.ctf.PhaseFlipper` when ``phase_flip=False``);
        ``pixel_size`` (Å).
    """
    random_state = check_random_state(random_state)
    clean, coordinates, pixel_size = _state_projections(binning)
    state = random_state.permutation(np.repeat(np.arange(3), n_per_state))
    return _particle_set(
        clean[state],
        pixel_size,
        snr,
        phase_flip,
        random_state,
        state=state,
        state_names=STATE_NAMES,
        path_coordinate=coordinates[state],
    )


@validate_params(
    {
        "n_samples": _COUNT,
        **_SET_CONSTRAINTS,
    },
    prefer_skip_nested_validation=True,
)
def make_adk_path(n_samples=600, *, snr=0.1, binning=1, phase_flip=True, random_state=None):
    """Particles along the closed -> open transition path of AdK (continuous variability).

    A particle at path coordinate ``t`` in [0, 1] is the projection of the map
    interpolated linearly between the two path frames around frame ``97 t``
    (projection is linear, so the projections are interpolated).

    Parameters
    ----------
    n_samples : int, default=600
    snr, binning, phase_flip, random_state
        As in :func:`make_adk_states`.

    Returns
    -------
    data : Bunch
        ``images`` (n_samples, size, size) float32; ``clean_images`` (the same
        without noise); ``path_coordinate`` (n_samples,) in [0, 1], 0 closed
        and 1 open; ``state`` (-1: no discrete state); ``defocus`` (µm); ``ctf``;
        ``pixel_size`` (Å).
    """
    random_state = check_random_state(random_state)
    return _path_set(*_path_projections(binning), n_samples, snr, phase_flip, random_state)


# A view path: closed AdK turned about the image's vertical axis by up to this angle, projections
# interpolated between these many computed views.
_VIEW_PATH_DEGREES = 90.0
_VIEW_KNOTS = 31


def _rotation_about_y(degrees):
    """Rotation of (z, y, x) voxel coordinates about the y axis, composed with the default view."""
    angle = np.deg2rad(degrees)
    turn = np.array(
        [[np.cos(angle), 0.0, -np.sin(angle)], [0.0, 1.0, 0.0], [np.sin(angle), 0.0, np.cos(angle)]]
    )
    return DEFAULT_VIEW @ turn


@validate_params(
    {
        "n_samples": _COUNT,
        **_SET_CONSTRAINTS,
    },
    prefer_skip_nested_validation=True,
)
def make_adk_views(n_samples=600, *, snr=0.1, binning=1, phase_flip=True, random_state=None):
    """Particles of closed AdK seen along a path of views: turned by ``90 t`` degrees about the image's
    vertical axis, ``t`` in [0, 1] (continuous variability of orientation, not of conformation).

    Projections are computed every 3 degrees and interpolated linearly in between.

    Parameters
    ----------
    n_samples : int, default=600
    snr, binning, phase_flip, random_state
        As in :func:`make_adk_states`.

    Returns
    -------
    data : Bunch
        As :func:`make_adk_path`, with ``path_coordinate`` the view angle
        over 90 degrees.
    """
    random_state = check_random_state(random_state)
    maps = load_adk_maps()
    closed = maps.volumes[maps.names.index(_STATE_MAPS[0])]
    knots = np.linspace(0.0, 1.0, _VIEW_KNOTS)
    views = np.concatenate([project(closed[None], _rotation_about_y(_VIEW_PATH_DEGREES * t)) for t in knots])
    return _path_set(
        _bin(views, binning), knots, maps.voxel_size * binning, n_samples, snr, phase_flip, random_state
    )


@validate_params(
    {
        "n_per_state": _COUNT,
        "n_path": _COUNT,
        **_SET_CONSTRAINTS,
    },
    prefer_skip_nested_validation=True,
)
def make_adk_mixed(n_per_state=200, n_path=600, *, snr=0.1, binning=1, phase_flip=True, random_state=None):
    """Discrete states and a continuous path together: the particles of :func:`make_adk_states` and of
    :func:`make_adk_path`, shuffled.

    Parameters
    ----------
    n_per_state : int, default=200
    n_path : int, default=600
    snr, binning, phase_flip, random_state
        As in :func:`make_adk_states`.

    Returns
    -------
    data : Bunch
        ``images``, ``clean_images``, ``defocus``, ``ctf``, ``pixel_size`` as
        :func:`make_adk_states`; ``state`` (0, 1, 2, or -1 for a particle of
        the path); ``path_coordinate`` (every particle's place on the path).
    """
    random_state = check_random_state(random_state)
    state_clean, state_coordinates, pixel_size = _state_projections(binning)
    path_clean, knots, _ = _path_projections(binning)
    state = random_state.permutation(np.repeat(np.arange(-1, 3), [n_path] + [n_per_state] * 3))
    coordinate = np.where(
        state >= 0, state_coordinates[np.maximum(state, 0)], random_state.uniform(size=len(state))
    )
    projections = np.where(
        (state >= 0)[:, None, None],
        state_clean[np.maximum(state, 0)],
        _interpolated(path_clean, knots, coordinate),
    )
    return _particle_set(
        projections,
        pixel_size,
        snr,
        phase_flip,
        random_state,
        state=state,
        state_names=STATE_NAMES,
        path_coordinate=coordinate,
    )


def load_demo(n_samples=1000, *, random_state=0):
    """The demo set: AdK particles along the closed -> open path, 32 x 32 px of 2.4 Å, SNR 0.1.

    Made in a few seconds from the shipped maps (:func:`make_adk_path` with
    ``binning=2``); the same ``random_state`` gives the same particles.

    Parameters
    ----------
    n_samples : int, default=1000
    random_state : int, RandomState instance or None, default=0

    Returns
    -------
    data : Bunch
        As :func:`make_adk_path`: ``images``, ``path_coordinate``, ``defocus``,
        ``pixel_size``; plus ``mask_radius``, a circular mask radius in pixels
        that holds the particle.
    """
    data = make_adk_path(n_samples, snr=0.1, binning=2, random_state=random_state)
    data.mask_radius = 13.0
    return data
