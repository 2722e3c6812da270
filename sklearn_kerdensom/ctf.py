"""The contrast transfer function (CTF) with RELION's conventions, and phase flipping.

A particle image is its projection filtered by the microscope's CTF, which changes sign in rings whose
radii depend on the defocus. Particles of different defoci then differ as much as different
structures do, so particles are phase-flipped before they are classified: each Fourier component is
multiplied by the sign of its CTF.

The CTF follows RELION (``src/ctf.h``)::

    CTF(k) = scale exp(-B k^2 / 4) sin(pi lambda df(k) k^2 - pi/2 Cs lambda^3 k^4 + asin(Q0) + phase_shift)
    df(k) = (U + V) / 2 + (U - V) / 2 * cos(2 (angle(k) - defocus_angle))

with ``k`` the spatial frequency in 1/Å (``angle(k)`` from the x axis, the image columns, towards y,
the rows), ``U``, ``V`` the defoci in Å (positive underfocus), ``lambda`` the relativistic electron
wavelength at the voltage, ``Cs`` the spherical aberration in Å and ``Q0`` the amplitude contrast. It
is positive at low frequency, for particles that are white on a dark background, as RELION extracts
them. RELION's higher-order aberrations and anisotropic magnification are not modelled.
"""

from dataclasses import dataclass, fields
from numbers import Real

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.utils._param_validation import Interval, validate_params

from ._chunks import sample_chunks
from ._stacks import ImageStackTagsMixin, fitted_stack, float_dtype, map_stack, validated_stack

PIXEL_SIZE_COLUMN = "rlnImagePixelSize"
PHASE_FLIPPED_COLUMN = "rlnCtfDataArePhaseFlipped"
PREMULTIPLIED_COLUMN = "rlnCtfDataAreCtfPremultiplied"


def electron_wavelength(voltage):
    """Relativistic wavelength of electrons accelerated by ``voltage``.

    Parameters
    ----------
    voltage : float or array-like
        Accelerating voltage in kV.

    Returns
    -------
    wavelength : float or ndarray
        In Å (0.0197 Å at 300 kV), RELION's ``12.2643247 / sqrt(V (1 + 0.978466e-6 V))``, V in volts.
    """
    volts = np.asarray(voltage, dtype=np.float64) * 1e3
    return 12.2643247 / np.sqrt(volts * (1.0 + 0.978466e-6 * volts))


@dataclass(frozen=True)
class CTFParameters:
    """Per-particle CTF parameters, in RELION's units; every field is a float64 array of shape (n,).

    Made by :meth:`from_table` from a particle table with RELION's column names, or directly, for
    instance ``CTFParameters(defocus_u=..., voltage=300, ...)`` (scalars are broadcast).
    """

    defocus_u: np.ndarray  # Å, positive underfocus (rlnDefocusU)
    defocus_v: np.ndarray  # Å (rlnDefocusV)
    defocus_angle: np.ndarray  # degrees, of the U axis from the x axis (rlnDefocusAngle)
    voltage: np.ndarray  # kV (rlnVoltage)
    spherical_aberration: np.ndarray  # mm (rlnSphericalAberration)
    amplitude_contrast: np.ndarray  # fraction in [0, 1) (rlnAmplitudeContrast)
    phase_shift: np.ndarray = 0.0  # degrees, of a phase plate (rlnPhaseShift)
    bfactor: np.ndarray = 0.0  # Å^2 (rlnCtfBfactor)
    scale: np.ndarray = 1.0  # (rlnCtfScalefactor)

    # RELION's label of each field, and what a missing optional column defaults to (a field name:
    # that field's value).
    COLUMNS = {
        "defocus_u": ("rlnDefocusU", None),
        "defocus_v": ("rlnDefocusV", "defocus_u"),
        "defocus_angle": ("rlnDefocusAngle", 0.0),
        "voltage": ("rlnVoltage", None),
        "spherical_aberration": ("rlnSphericalAberration", None),
        "amplitude_contrast": ("rlnAmplitudeContrast", None),
        "phase_shift": ("rlnPhaseShift", 0.0),
        "bfactor": ("rlnCtfBfactor", 0.0),
        "scale": ("rlnCtfScalefactor", 1.0),
    }

    def __post_init__(self):
        values = [_numbers(np.atleast_1d(getattr(self, field.name)), field.name) for field in fields(self)]
        for field, value in zip(fields(self), values, strict=True):
            if value.ndim != 1:
                raise ValueError(
                    f"CTF parameter {field.name} must be a number per particle; got shape {value.shape}."
                )
        try:
            values = np.broadcast_arrays(*values)
        except ValueError:
            lengths = sorted({len(value) for value in values})
            raise ValueError(
                f"the CTF parameters are of different numbers of particles: {lengths}."
            ) from None
        for field, value in zip(fields(self), values, strict=True):
            if not np.all(np.isfinite(value)):
                raise ValueError(
                    f"CTF parameter {field.name} ({self.COLUMNS[field.name][0]}) is NaN or infinite."
                )
            object.__setattr__(self, field.name, np.array(value, dtype=np.float64))
        _check_range(self.voltage > 0, "voltage", "rlnVoltage", "must be > 0 kV")
        _check_range(
            (self.amplitude_contrast >= 0) & (self.amplitude_contrast < 1),
            "amplitude_contrast",
            "rlnAmplitudeContrast",
            "must be in [0, 1)",
        )

    @classmethod
    def from_table(cls, table):
        """The CTF parameters of a particle table with RELION's column names.

        Parameters
        ----------
        table : pandas.DataFrame or mapping of str to array-like
            One row per particle, with the optics block's columns merged in (as
            :func:`sklearn_kerdensom.io.load_particles` returns it). ``rlnDefocusU``, ``rlnVoltage``,
            ``rlnSphericalAberration`` and ``rlnAmplitudeContrast`` are required; ``rlnDefocusV``
            defaults to ``rlnDefocusU``, ``rlnDefocusAngle``, ``rlnPhaseShift`` and ``rlnCtfBfactor`` to
            0 and ``rlnCtfScalefactor`` to 1.

        Returns
        -------
        parameters : CTFParameters

        Raises
        ------
        ValueError
            If a required column is missing or a value is not a finite number in its range.
        """
        missing = missing_ctf_columns(table)
        if missing:
            raise ValueError(
                f"the particle table has no CTF: the column(s) {', '.join(missing)} are missing."
            )
        values = {}
        for name, (label, default) in cls.COLUMNS.items():
            if label in table:
                values[name] = _numbers(table[label], label)
            else:
                values[name] = values[default] if isinstance(default, str) else default
        return cls(**values)

    def __len__(self):
        return len(self.defocus_u)

    def subset(self, rows):
        """The parameters of the particles ``rows`` (a slice, index array or boolean mask)."""
        return CTFParameters(**{field.name: getattr(self, field.name)[rows] for field in fields(self)})


def _check_range(valid, name, label, requirement):
    if not np.all(valid):
        raise ValueError(f"CTF parameter {name} ({label}) {requirement}.")


def _numbers(column, label):
    try:
        return np.asarray(column, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{label} must hold numbers.") from None


def missing_ctf_columns(table):
    """The columns :meth:`CTFParameters.from_table` requires that a particle table lacks."""
    return [
        label for label, default in CTFParameters.COLUMNS.values() if default is None and label not in table
    ]


def has_ctf(table):
    """Whether a particle table has the columns :meth:`CTFParameters.from_table` requires."""
    return not missing_ctf_columns(table)


@validate_params(
    {
        "shape": ["array-like"],
        "pixel_size": [Interval(Real, 0, None, closed="neither")],
        "parameters": [CTFParameters],
    },
    prefer_skip_nested_validation=True,
)
def contrast_transfer(shape, pixel_size, parameters):
    """The CTF of each particle on the grid of :func:`numpy.fft.rfft2` of its image.

    Parameters
    ----------
    shape : tuple of int
        ``(height, width)`` of the images, in pixels.
    pixel_size : float
        Å per pixel.
    parameters : CTFParameters
        Of ``n`` particles.

    Returns
    -------
    ctf : ndarray of shape (n, height, width // 2 + 1), float64
        RELION's CTF (see the module's docstring) at the frequencies of ``numpy.fft.rfft2``.
    """
    height, width = (int(size) for size in shape)
    rows = np.fft.fftfreq(height, d=pixel_size)[:, None]
    columns = np.fft.rfftfreq(width, d=pixel_size)[None, :]
    frequency2 = rows**2 + columns**2
    direction = np.arctan2(rows, columns)

    def per_particle(values):
        return values[:, None, None]

    p = parameters
    wavelength = per_particle(electron_wavelength(p.voltage))
    mean_defocus = per_particle((p.defocus_u + p.defocus_v) / 2)
    astigmatism = per_particle((p.defocus_u - p.defocus_v) / 2)
    defocus = mean_defocus + astigmatism * np.cos(2 * (direction - per_particle(np.deg2rad(p.defocus_angle))))
    spherical_aberration = per_particle(p.spherical_aberration * 1e7)
    phase = (
        np.pi * wavelength * defocus * frequency2
        - np.pi / 2 * spherical_aberration * wavelength**3 * frequency2**2
        + per_particle(np.arcsin(p.amplitude_contrast) + np.deg2rad(p.phase_shift))
    )
    envelope = per_particle(p.scale) * np.exp(-per_particle(p.bfactor) / 4 * frequency2)
    return envelope * np.sin(phase)


@validate_params(
    {
        "images": ["array-like"],
        "parameters": [CTFParameters],
        "pixel_size": [Interval(Real, 0, None, closed="neither")],
    },
    prefer_skip_nested_validation=True,
)
def flip_phases(images, parameters, pixel_size):
    """Images with every Fourier component multiplied by the sign of its CTF.

    Parameters
    ----------
    images : array-like of shape (n, height, width)
    parameters : CTFParameters
        Of the ``n`` particles, or of one particle for all of them.
    pixel_size : float
        Å per pixel.

    Returns
    -------
    flipped : ndarray of shape (n, height, width), in the dtype of ``images`` (float64 for integers)
        As RELION flips phases: where the CTF is 0, the component is kept.
    """
    images = np.asarray(validated_stack(images, "images"))
    if len(parameters) not in (1, len(images)):
        raise ValueError(
            f"parameters has the CTF of {len(parameters)} particles, but there are {len(images)} images."
        )
    return _flip_phases(images, parameters, pixel_size)


def _flip_phases(images, parameters, pixel_size):
    """:func:`flip_phases` of a checked stack."""
    dtype = float_dtype(images)
    signs = np.where(contrast_transfer(images.shape[1:], pixel_size, parameters) < 0, -1.0, 1.0)
    flipped = np.fft.irfft2(np.fft.rfft2(images) * signs, s=images.shape[1:])
    return flipped.astype(dtype, copy=False)


def flip_phases_into(images, parameters, pixel_size, rows, progress=None):
    """Phase-flip the images ``rows`` (a boolean mask) of a stack in place, a chunk at a time.

    ``progress(n_images)``, when given, is called after each chunk with the number of images it held.
    """
    for chunk in sample_chunks(len(images), 4 * int(np.prod(images.shape[1:])), 1):
        selected = chunk.start + np.flatnonzero(rows[chunk])
        if len(selected):
            images[selected] = _flip_phases(images[selected], parameters.subset(selected), pixel_size)
        if progress is not None:
            progress(chunk.stop - chunk.start)


def flagged_rows(table, label):
    """The particles whose ``label`` column (an optics group's flag, such as ``rlnCtfDataArePhaseFlipped``)
    is 1; none when the table has no such column."""
    if label not in table:
        return np.zeros(len(table), dtype=bool)
    return _numbers(table[label], label) == 1


def rows_to_flip(table):
    """Which particles of a table with CTF parameters still need phase flipping.

    Those whose optics group says neither that its images are phase-flipped (``rlnCtfDataArePhaseFlipped``
    1) nor that they are premultiplied by their CTF (``rlnCtfDataAreCtfPremultiplied`` 1, where the CTF
    is squared and has no sign left to correct).

    Returns
    -------
    rows : ndarray of shape (n_particles,), bool
    """
    return ~(flagged_rows(table, PHASE_FLIPPED_COLUMN) | flagged_rows(table, PREMULTIPLIED_COLUMN))


def pixel_size_of(table):
    """The one pixel size of a particle table's ``rlnImagePixelSize`` column, or None without it."""
    if PIXEL_SIZE_COLUMN not in table:
        return None
    sizes = np.unique(_numbers(table[PIXEL_SIZE_COLUMN], PIXEL_SIZE_COLUMN))
    if len(sizes) != 1:
        raise ValueError(
            f"the particles have {len(sizes)} pixel sizes ({PIXEL_SIZE_COLUMN}: "
            f"{', '.join(f'{size:g}' for size in sizes[:5])}); classify one optics group at a time."
        )
    if not (np.isfinite(sizes[0]) and sizes[0] > 0):
        raise ValueError(f"{PIXEL_SIZE_COLUMN} is {sizes[0]:g}; a pixel size is a positive number of Å.")
    return float(sizes[0])


class PhaseFlipper(ImageStackTagsMixin, TransformerMixin, BaseEstimator):
    """Correct particle images for the CTF by phase flipping, with RELION's conventions.

    Every Fourier component of each image is multiplied by the sign of the particle's CTF, so that
    particles of different defoci can be compared. The CTF of each particle comes with the images, as
    the ``ctf`` argument of :meth:`fit`, :meth:`transform` and :meth:`fit_transform`: a particle table
    with RELION's column names (the ``metadata`` of :func:`sklearn_kerdensom.io.load_particles`) or
    :class:`CTFParameters`. In a :class:`~sklearn.pipeline.Pipeline`, pass it as ``ctf=`` to the
    pipeline's ``fit`` and ``transform`` with scikit-learn's metadata routing enabled
    (``sklearn.set_config(enable_metadata_routing=True)``); it is requested by default.

    Parameters
    ----------
    pixel_size : float, default=None
        Å per pixel. None takes the one value of the table's ``rlnImagePixelSize`` column.

    Attributes
    ----------
    image_shape_ : tuple of int
        ``(height, width)`` of the images seen in :meth:`fit`.

    See Also
    --------
    contrast_transfer : The CTF on an image's Fourier grid.
    CTFParameters : Per-particle CTF parameters.

    Examples
    --------
    >>> from sklearn_kerdensom.ctf import PhaseFlipper
    >>> from sklearn_kerdensom.datasets import make_adk_path
    >>> data = make_adk_path(50, binning=4, phase_flip=False, random_state=0)
    >>> flipped = PhaseFlipper().fit_transform(data.images, ctf=data.ctf)
    >>> flipped.shape
    (50, 32, 32)
    """

    _parameter_constraints = {"pixel_size": [Interval(Real, 0, None, closed="neither"), None]}
    __metadata_request__fit = {"ctf": True}
    __metadata_request__transform = {"ctf": True}

    def __init__(self, pixel_size=None):
        self.pixel_size = pixel_size

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None, ctf=None):
        """Check the images and their CTF parameters.

        Parameters
        ----------
        X : array-like of shape (n_images, height, width)
        y : Ignored
        ctf : pandas.DataFrame, mapping or CTFParameters
            The CTF parameters of the ``n_images`` particles, in order.

        Returns
        -------
        self : PhaseFlipper
        """
        images = validated_stack(X)
        self._checked(images, ctf)
        self.image_shape_ = tuple(images.shape[1:])
        return self

    def transform(self, X, ctf=None):
        """Phase-flipped images.

        Parameters
        ----------
        X : array-like of shape (n_images, height, width)
            Never modified.
        ctf : pandas.DataFrame, mapping or CTFParameters
            The CTF parameters of the ``n_images`` particles, in order.

        Returns
        -------
        flipped : ndarray of shape (n_images, height, width)
            float32 for float32 images, else float64. A lazy Dask array for a Dask array; a memory map
            of a temporary file for a memory map (see :func:`sklearn_kerdensom.io.load_particles`).
        """
        images = fitted_stack(self, X)
        parameters, pixel_size = self._checked(images, ctf)
        return map_stack(
            images,
            lambda chunk, rows: _flip_phases(chunk, parameters.subset(rows), pixel_size),
            self.image_shape_,
        )

    def fit_transform(self, X, y=None, ctf=None):
        """:meth:`fit`, then :meth:`transform`, with the same ``ctf``."""
        return self.fit(X, y, ctf=ctf).transform(X, ctf=ctf)

    def _checked(self, images, ctf):
        """The CTF parameters and pixel size for ``images``."""
        if ctf is None:
            raise ValueError(
                "PhaseFlipper needs the particles' CTF: pass ctf= (a particle table with RELION's columns, "
                "or CTFParameters) with the images."
            )
        parameters = ctf if isinstance(ctf, CTFParameters) else CTFParameters.from_table(ctf)
        if len(parameters) != len(images):
            raise ValueError(
                f"ctf has the parameters of {len(parameters)} particles, but there are {len(images)} images."
            )
        pixel_size = self.pixel_size
        if pixel_size is None and not isinstance(ctf, CTFParameters):
            pixel_size = pixel_size_of(ctf)
        if pixel_size is None:
            raise ValueError(
                "PhaseFlipper needs the pixel size: set pixel_size=, or give ctf a "
                f"{PIXEL_SIZE_COLUMN} column."
            )
        return parameters, float(pixel_size)
