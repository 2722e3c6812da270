"""The internal coordinates the map is fitted in.

They are Xmipp's: the raw features, or with ``standardize`` per-feature
z-scores (reference §8.3: features whose standard deviation is 0 keep their raw
values). Working in Xmipp's own coordinates matters for faithfulness: Xmipp
rounds code vectors to float32 there, and its Gauss-Seidel stopping rule (an L1
norm of the code vectors) is not translation invariant.

Samples are mapped chunk by chunk, never as a whole copy of the data; without
``standardize`` a chunk of the right dtype is used as it is. ``centre``, the
data mean in internal coordinates, is the reference point of the distance
expansion (:mod:`._passes`), which keeps float32 products accurate for data that
sit far from the origin.
"""

from dataclasses import dataclass

import numpy as np

from ._samples import samples_of


@dataclass(frozen=True)
class Frame:
    """Affine map ``(x - offset) / scale`` of raw features to internal coordinates.

    All arrays have shape (n_features,) and dtype float64; ``offset`` and
    ``scale`` are ``None`` when the map is the identity. ``mean_square`` is the
    mean over features of the second moment of the internal coordinates, the
    scale of the data's squared distances per feature.
    """

    offset: np.ndarray | None
    scale: np.ndarray | None
    centre: np.ndarray
    mean_square: float

    def to_internal(self, rows, dtype):
        """Rows of raw samples in internal coordinates, in ``dtype`` (a view when nothing changes)."""
        if self.offset is None:
            return np.asarray(rows, dtype=dtype)
        internal = np.subtract(rows, self.offset, dtype=np.float64)
        internal /= self.scale
        return internal.astype(dtype, copy=False)

    def to_raw(self, internal):
        """Internal coordinates (e.g. code vectors) back to raw feature units, float64."""
        if self.offset is None:
            return np.asarray(internal, dtype=np.float64)
        return internal * self.scale + self.offset

    def log_jacobian(self):
        """``-sum(log(scale))``: turns a log density of internal coordinates into one of raw features."""
        if self.scale is None:
            return 0.0
        return -float(np.sum(np.log(self.scale)))


def _sums(rows, terms):
    """Per-feature float64 sums of raw rows, and their number, as one vector."""
    return np.append(np.sum(rows, axis=0, dtype=np.float64), len(rows))


def _centred_sums_of_squares(rows, terms, mean):
    centred = np.subtract(rows, mean, dtype=np.float64)
    return np.einsum("ij,ij->j", centred, centred)


def feature_moments(X):
    """Per-feature mean and sample standard deviation (n - 1) in float64, accumulated by chunks."""
    raw = samples_of(X, None, np.float64, 1)
    sums = raw.reduce(_sums)
    n_samples = sums[-1]
    mean = sums[:-1] / n_samples
    if n_samples < 2:
        return mean, np.zeros_like(mean)
    sum_sq = raw.reduce(lambda rows, terms: _centred_sums_of_squares(rows, terms, mean))
    return mean, np.sqrt(sum_sq / (n_samples - 1))


def fit_frame(X, standardize):
    """The internal frame for data ``X`` of shape (n_samples, n_features)."""
    mean, std = feature_moments(X)
    if not standardize:
        mean_square = float(np.mean(std**2 + mean**2))
        return Frame(offset=None, scale=None, centre=mean, mean_square=mean_square)
    constant = std == 0
    centre = np.where(constant, mean, 0.0)
    return Frame(
        offset=np.where(constant, 0.0, mean),
        scale=np.where(constant, 1.0, std),
        centre=centre,
        mean_square=float(np.mean(np.where(constant, 0.0, 1.0) + centre**2)),
    )
