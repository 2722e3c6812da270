"""The internal coordinates the map is fitted in.

By default they are Xmipp's: the raw features, or with ``standardize``
per-feature z-scores (reference §8.3: features whose standard deviation is 0
keep their raw values). Working in Xmipp's own coordinates matters for
faithfulness: Xmipp rounds code vectors to float32 there, and its Gauss-Seidel
stopping rule (an L1 norm of the code vectors) is not translation invariant.

Two departures keep the arithmetic sound whatever the data's offset and scale,
and both leave the fitted map unchanged in exact arithmetic:

* **Centring**. Data far from the origin compared with their spread (e.g.
  uint16 stacks stored with a +32768 offset) lose in a float32 product
  ``W.T @ X`` as many bits as the offset is larger than the spread, and the
  width update, a difference of such sums, can even go negative. Such data are
  fitted as ``x - mean`` (with ``standardize``, constant features too, which
  otherwise keep their raw values). The likelihood centres data whose offset
  exceeds their spread; Xmipp's rules, which round code vectors and stop their
  Gauss-Seidel sweeps in raw coordinates, only data whose offset exceeds 8192
  times their spread, where its float64 distances would lose their digits.
* **A power-of-two scale**. Data whose magnitude is far from 1 (``1e-30`` or
  ``1e30`` in float32) overflow or underflow in the squares and products of a
  pass. They are fitted as ``x * 2**-exponent``, which is exact in floating
  point, so a map of ``2**k X`` is bit for bit ``2**k`` times the map of ``X``.

Both cost a copy of every chunk in every pass, so they apply only where the
data need them. Samples are mapped chunk by chunk, never as a whole copy of the
data; with neither, a chunk of the right dtype is used as it is. ``centre``,
the data mean in internal coordinates, is the reference point of the distance
expansion (:mod:`._passes`).
"""

import math
from dataclasses import dataclass, replace

import numpy as np

from ._array_api import device_of, dtype_in, namespace, times_power_of_two, to_device
from ._samples import samples_of

# Internal magnitudes within 2**-EXPONENT_RANGE .. 2**EXPONENT_RANGE, with EXPONENT_RANGE a quarter of the
# compute dtype's exponent range (32 for float32, 256 for float64), leave the squares and products of a
# pass far from overflow and underflow; outside it the data are scaled by a power of two.
_EXPONENT_RANGE_FRACTION = 4

# Data whose magnitude exceeds 2**_MAX_DATA_EXPONENT (about 1e146) or falls below its inverse have a kernel
# variance, in squared units of X, that float64 cannot hold (with a margin for the width's own range).
_MAX_DATA_EXPONENT = 485


@dataclass(frozen=True)
class Frame:
    """Affine map ``2**-exponent * (x - offset) / scale`` of raw features to internal coordinates.

    ``offset`` and ``scale`` have shape (n_features,) and dtype float64, or are
    ``None`` (no offset, unit scale). ``centre`` is the data mean in internal
    coordinates. ``spread`` is the mean over features of the variance of the
    internal coordinates (their mean square when every sample is the same):
    the scale of the data's squared distances per feature.
    """

    offset: np.ndarray | None
    scale: np.ndarray | None
    exponent: int
    centre: np.ndarray
    spread: float

    @property
    def is_identity(self):
        return self.offset is None and self.scale is None and self.exponent == 0

    def to_internal(self, rows, dtype):
        """Rows of raw samples in internal coordinates, in ``dtype`` (a view when nothing changes).

        ``rows`` may be of any Array API namespace, with the frame's vectors in the same one
        (:meth:`on_device`).
        """
        xp = namespace(rows)
        dtype = dtype_in(xp, dtype)
        if self.is_identity:
            return xp.asarray(rows, dtype=dtype)
        internal = xp.astype(rows, xp.float64, copy=True)
        if self.offset is not None:
            internal -= self.offset
        if self.scale is not None:
            internal /= self.scale
        if self.exponent:
            internal = times_power_of_two(internal, -self.exponent)
        return xp.astype(internal, dtype, copy=False)

    def on_device(self, xp, device):
        """This frame with its vectors in namespace ``xp`` on ``device``, for :meth:`to_internal` there."""
        return replace(
            self,
            offset=to_device(self.offset, xp, device),
            scale=to_device(self.scale, xp, device),
            centre=to_device(self.centre, xp, device),
        )

    def to_raw(self, internal):
        """Internal coordinates (e.g. code vectors) back to raw feature units, float64."""
        raw = np.ldexp(np.asarray(internal, dtype=np.float64), self.exponent)
        if self.scale is not None:
            raw = raw * self.scale
        if self.offset is not None:
            raw = raw + self.offset
        return raw

    def distance_to_raw(self, distance):
        """Distances (scalar or array) of internal coordinates in raw units (standardized with ``scale``)."""
        if not self.exponent:
            return distance
        if isinstance(distance, np.ndarray):
            distance = distance.copy()  # not the caller's array
        return times_power_of_two(distance, self.exponent)

    def variance_to_raw(self, variance):
        """A variance of internal coordinates in squared raw units (standardized units with ``scale``)."""
        return math.ldexp(variance, 2 * self.exponent)

    def _scale_log_jacobian(self, n_features):
        """The power-of-two scale's part of :meth:`log_jacobian`."""
        return -n_features * self.exponent * math.log(2.0)

    def negative_log_likelihood_to_raw(self, negative_log_likelihood, n_samples, n_features):
        """A negative log-likelihood (summed over samples) of internal coordinates in the units of the
        data, but for the standardization's scale."""
        return negative_log_likelihood - n_samples * self._scale_log_jacobian(n_features)

    def log_jacobian(self, n_features):
        """Turns a log density of internal coordinates into one of raw features."""
        log_jacobian = self._scale_log_jacobian(n_features)
        if self.scale is not None:
            log_jacobian -= float(np.sum(np.log(self.scale)))
        return log_jacobian


@dataclass
class _FirstMoments:
    """Per-feature sums and largest absolute values of raw rows, and their number; they add up."""

    sums: np.ndarray
    peaks: np.ndarray
    count: int

    @classmethod
    def of(cls, rows, terms):
        xp = namespace(rows)
        return cls(xp.sum(rows, axis=0, dtype=xp.float64), xp.max(xp.abs(rows), axis=0), rows.shape[0])

    def __add__(self, other):
        return _FirstMoments(
            self.sums + other.sums, np.maximum(self.peaks, other.peaks), self.count + other.count
        )


def _scaled_centred_sums(rows, terms, mean, exponent):
    """Per-feature sums and sums of squares of ``(rows - mean) * 2**-exponent``, as one vector."""
    xp = namespace(rows)
    centred = xp.astype(rows, xp.float64, copy=True)
    centred -= to_device(mean, xp, device_of(rows))
    centred = times_power_of_two(centred, -exponent)
    if isinstance(centred, np.ndarray):
        sq_sums = np.einsum("ij,ij->j", centred, centred)
    else:
        sq_sums = xp.sum(centred * centred, axis=0)
    return xp.concat([xp.sum(centred, axis=0), sq_sums])


def _binary_exponent(value):
    """``e`` with ``value = m * 2**e``, ``0.5 <= m < 1`` (0 for 0)."""
    return math.frexp(value)[1]


def _check_magnitude(peak):
    exponent = _binary_exponent(peak)
    if exponent > _MAX_DATA_EXPONENT:
        raise ValueError(
            f"X is too large to fit (largest |x| = {peak:.3g}): the kernel variance, in squared units of X, "
            "would overflow float64. Rescale X (e.g. divide it by its largest value)."
        )
    if 0 < peak and exponent < -_MAX_DATA_EXPONENT:
        raise ValueError(
            f"X is too small to fit (largest |x| = {peak:.3g}): the kernel variance, in squared units of X, "
            "would underflow float64. Rescale X (e.g. divide it by its largest value)."
        )


def feature_moments(X, n_threads=1):
    """Per-feature mean, sample standard deviation (n - 1) divided by ``2**exponent``, and largest ``|x|``.

    Accumulated by chunks, the squares of values scaled by ``2**-exponent`` (the binary exponent of the
    largest ``|x|``), so that no square overflows or underflows. The second pass also corrects the mean
    by the mean of the centred values (the corrected two-pass algorithm), so the mean of a constant
    feature is its value exactly, not the rounding of its sum divided by ``n``.

    Returns
    -------
    mean, scaled_std : ndarray of shape (n_features,), float64
    exponent : int
    peak : float
    """
    first = samples_of(X, None, np.float64, 1, n_threads=n_threads).reduce(_FirstMoments.of)
    exponent = _binary_exponent(float(first.peaks.max()))
    mean = first.sums / first.count
    peak = float(first.peaks.max())
    if first.count < 2:
        return mean, np.zeros_like(mean), exponent, peak
    sums = samples_of(X, None, np.float64, 1, n_threads=n_threads).reduce(
        lambda rows, terms: _scaled_centred_sums(rows, terms, mean, exponent)
    )
    centred_sum, sum_sq = np.split(sums, 2)
    correction = centred_sum / first.count
    sum_sq = np.maximum(sum_sq - centred_sum * correction, 0.0)
    mean = mean + np.ldexp(correction, exponent)
    return mean, np.sqrt(sum_sq / (first.count - 1)), exponent, peak


def _exponent_range(dtype):
    return np.finfo(dtype).maxexp // _EXPONENT_RANGE_FRACTION


def fit_frame(X, standardize, compute_dtype=np.float64, centre_above=1.0, n_threads=1):
    """The internal frame for data ``X`` of shape (n_samples, n_features).

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    standardize : bool
        Per-feature z-scores (Xmipp's ``--norm``).
    compute_dtype : dtype
        The dtype of the passes' products: it sets the magnitudes that need a power-of-two scale.
    centre_above : float
        The data are centred on their mean when their mean squared offset exceeds this many times their
        variance (per feature, averaged over features; with ``standardize``, the offset of the constant
        features, which keep their raw values otherwise).
    n_threads : int
        Threads of its passes.
    """
    mean, scaled_std, peak_exponent, peak = feature_moments(X, n_threads)
    if standardize:
        constant = scaled_std == 0
        variance = float(np.mean(~constant))
        offset_sq = float(np.mean(np.where(constant, mean, 0.0) ** 2))
        centred = offset_sq > centre_above * variance
        centre = np.where(constant & ~centred, mean, 0.0)
        # Z-scores are of order 1 whatever the data's scale: no power-of-two scale.
        return Frame(
            offset=np.where(constant & ~centred, 0.0, mean),
            scale=np.where(constant, 1.0, np.ldexp(scaled_std, peak_exponent)),
            exponent=0,
            centre=centre,
            spread=variance or offset_sq,
        )
    _check_magnitude(peak)
    # In units of 2**peak_exponent, where nothing overflows: the data's variance and squared offset.
    scaled_mean = np.ldexp(mean, -peak_exponent)
    variance = float(np.mean(scaled_std**2))
    offset_sq = float(np.mean(scaled_mean**2))
    centred = offset_sq > centre_above * variance
    mean_square = variance + (0.0 if centred else offset_sq)
    exponent = peak_exponent + _binary_exponent(math.sqrt(mean_square or offset_sq))
    if abs(exponent) <= _exponent_range(compute_dtype):
        exponent = 0
    # Internal units are 2**exponent: rescale the quantities kept in units of 2**peak_exponent.
    shift = peak_exponent - exponent
    return Frame(
        offset=mean if centred else None,
        scale=None,
        exponent=exponent,
        centre=np.zeros_like(mean) if centred else np.ldexp(scaled_mean, shift),
        # Without spread (every sample the same), the floor of the width follows the data's magnitude.
        spread=math.ldexp(variance or offset_sq, 2 * shift),
    )
