"""The two kernels of KerDenSOM and the conventions of the two objectives.

A fitted map is a kernel density: an equal-weight mixture of ``n_nodes``
isotropic kernels centred at the code vectors, with one kernel variance ``s``.

* ``gaussian``: ``N(x; v, s I)``.
* ``student_t``: the multivariate t with ``df`` degrees of freedom and scale
  ``s I`` (reference §7). Its EM weights are the memberships times
  ``df / (df + d2 / s)``, which down-weights far samples.

The objectives differ in how ``sigma`` (the fitted width, ``sigma_``) relates to
the kernel variance ``s``. With ``objective="likelihood"`` they are the same.
Xmipp's Gaussian program divides squared distances by ``n_features`` inside the
memberships (reference §5.1), so its ``sigma`` is ``s / n_features``. The legacy
t-Student program has no such division.
"""

import numpy as np
from scipy.special import betaln, gammaln

from ._array_api import namespace

KERNELS = ("gaussian", "student_t")
OBJECTIVES = ("likelihood", "xmipp")


def kernel_variance(sigma, n_features, kernel, objective):
    """The variance ``s`` of the kernels for a width ``sigma`` in the objective's convention."""
    if objective == "xmipp" and kernel == "gaussian":
        return sigma * n_features
    return sigma


def sigma_from_kernel_variance(variance, n_features, kernel, objective):
    """Inverse of :func:`kernel_variance`."""
    if objective == "xmipp" and kernel == "gaussian":
        return variance / n_features
    return variance


def log_kernel_shape(sq_distances, variance, n_features, kernel, df):
    """Log of the kernel at the given squared distances, up to an additive constant.

    Parameters
    ----------
    sq_distances : ndarray of shape (n_samples, n_nodes)
        Squared Euclidean distances, float64.
    variance : float
        Kernel variance ``s``.

    Returns
    -------
    log_kernel : ndarray of shape (n_samples, n_nodes)
        Add :func:`log_kernel_constant` to get the log density.
    """
    if kernel == "gaussian":
        return sq_distances * (-0.5 / variance)
    return -0.5 * (df + n_features) * namespace(sq_distances).log1p(sq_distances / (df * variance))


def log_kernel_constant(variance, n_features, kernel, df):
    """The log normalising constant that completes :func:`log_kernel_shape` to a log density."""
    if kernel == "gaussian":
        return -0.5 * n_features * np.log(2.0 * np.pi * variance)
    # gammaln((df + d) / 2) - gammaln(df / 2) through the log beta function: the difference of two
    # gammaln values of order df * log(df) loses every digit at large df (1e17: an error of ~100).
    half_df, half_features = 0.5 * df, 0.5 * n_features
    log_gamma_ratio = gammaln(half_features) - betaln(half_df, half_features)
    return log_gamma_ratio - 0.5 * n_features * np.log(df * np.pi * variance)


def em_weights(memberships, sq_distances, variance, kernel, df):
    """Weights that the M-step gives each (sample, node) pair.

    For the Gaussian kernel these are the memberships. For the Student-t kernel
    they are the memberships times ``df / (df + d2 / s)``: the legacy program's
    un-normalised weights (reference §7), which are the t-mixture EM's expected
    precisions up to the constant factor ``(df + n_features) / df`` that
    :func:`variance_factor` puts back.
    """
    if kernel == "gaussian":
        return memberships
    return memberships * (df / (df + sq_distances / variance))


def variance_factor(n_features, kernel, df):
    """Factor ``(df + n_features) / df`` of the Student-t width update; 1 for the Gaussian kernel."""
    if kernel == "gaussian":
        return 1.0
    return (df + n_features) / df


def updated_sigma(
    weighted_sq_distance,
    roughness,
    regularization,
    n_samples,
    n_features,
    kernel,
    df,
    objective,
):
    """The kernel width that minimises the penalised objective for fixed weights.

    ``sigma = factor * (sum(W * d2) / scale + lambda * roughness) / (n_samples * n_features)``,
    where ``scale`` is ``n_features`` for Xmipp's Gaussian rule (reference §5.2: its
    ``alpha`` is divided by the dimension, the penalty is not) and 1 otherwise,
    and ``factor`` is :func:`variance_factor`.
    """
    data_term = weighted_sq_distance
    if objective == "xmipp" and kernel == "gaussian":
        data_term = weighted_sq_distance / n_features
    penalty = regularization * roughness if regularization != 0 else 0.0
    factor = variance_factor(n_features, kernel, df)
    return factor * (data_term + penalty) / (n_samples * n_features)


def penalty_weight(regularization, n_features, kernel, df):
    """Weight of ``roughness / (2 s)`` in the penalised negative log-likelihood.

    ``lambda`` for the Gaussian kernel, ``lambda * (df + n_features) / df`` for the
    Student-t kernel, which makes the legacy t-Student updates exact EM steps of
    that objective.
    """
    return regularization * variance_factor(n_features, kernel, df)
