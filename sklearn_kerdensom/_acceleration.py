"""SQUAREM: extrapolated EM iterations that reach an annealing step's fixed point in fewer passes.

Near its fixed point an EM step contracts slowly along a few directions: the last annealing step of a
default fit took 135 passes over 20 000 images to meet ``tol`` while its width moved by 1e-6 of itself.
SQUAREM (Varadhan & Roland 2008, Scand. J. Statist. 35:335-353; scheme S3) takes two EM iterations from
``theta``, ``theta_1 = M(theta)`` and ``theta_2 = M(theta_1)``, and jumps along the parabola through
them, ``theta + 2 a r + a^2 v`` with ``r = theta_1 - theta``, ``v = theta_2 - 2 theta_1 + theta`` and
``a = |r| / |v|``, then takes one EM iteration from there. The step length is capped, and the cap grows
while the jumps land (the control of the authors' ``SQUAREM`` package, whose defaults these are).

A jump is kept when the objective at its state is no higher than at ``theta_1``: every state of the
path then has an objective no higher than the one before it, as with plain EM, and the path reaches the
same kind of fixed point. A jump that raises it costs one pass, counted in the step's iterations, and the
path goes on from ``theta_2`` with a shorter cap. The length comes from the code vectors alone (the
width, a scalar in other units, follows the same parabola). Every state of the path is followed by an EM
iteration from it, so the stopping rule reads the width's change over one EM iteration, as without
acceleration.
"""

import numpy as np

# The step-length cap: 1 (plain EM) at first, times this factor each time a jump uses it in full,
# divided by it after a rejected jump.
_CAP_FACTOR = 4.0


def _parabola(start, first, second):
    """``r`` and ``v`` of the module docstring, for arrays or floats.

    An array ``first`` is overwritten (it becomes ``v``): a state of a fit in a subspace holds a coefficient
    per sample and node (:mod:`._subspace`), and the path needs ``first`` no more.
    """
    change = first - start
    if isinstance(first, np.ndarray):
        curvature = np.subtract(second, first, out=first)
    else:
        curvature = second - first
    curvature -= change
    return change, curvature


def _step_length(change, curvature):
    """``|r| / |v|`` of the module docstring, at least 1 (1 is the plain EM iteration ``theta_2``)."""
    curvature_norm = np.linalg.norm(curvature)
    if curvature_norm == 0.0:
        return 1.0
    return max(1.0, float(np.linalg.norm(change) / curvature_norm))


def _along_parabola(start, change, curvature, length):
    """``start + 2 a r + a^2 v`` of the module docstring; arrays ``change`` and ``curvature`` are
    overwritten (the point is ``change``'s array), for the memory of the states of a subspace fit."""
    change *= 2.0 * length
    change += start
    curvature *= length**2
    change += curvature
    return change


def iterate_squarem(step, code_vectors, sigma):
    """Iterate ``step`` (an :class:`._training.AnnealingStep`) with extrapolation until it ends.

    Returns
    -------
    code_vectors : ndarray of shape (n_nodes, n_features), float64
    sigma : float
        The state of the step's last EM iteration.
    """
    cap = 1.0
    while True:
        first, first_sigma, done = step.iterate(code_vectors, sigma)
        if done:
            return first, first_sigma
        second, second_sigma, done = step.iterate(first, first_sigma)
        if done:
            return second, second_sigma
        first_objective = step.trace.objective[-1]
        change, curvature = _parabola(code_vectors, first, second)
        # A state of a fit in a subspace holds a coefficient per sample and node (:mod:`._subspace`):
        # every state the path no longer needs is let go before the next pass (first is curvature now).
        del first
        length = min(cap, _step_length(change, curvature))
        at_cap = length == cap
        jump_sigma = _along_parabola(sigma, *_parabola(sigma, first_sigma, second_sigma), length)
        landed = False
        jumps = length > 1.0 and jump_sigma > step.sigma_floor
        jump = _along_parabola(code_vectors, change, curvature, length) if jumps else None
        change = curvature = None
        if jumps:
            code_vectors = None
            next_code_vectors, next_sigma, objective = step.evaluate(jump, jump_sigma)
            jump = None
            landed = bool(np.isfinite(objective) and objective <= first_objective)
            if landed:
                if step.record(jump_sigma, next_sigma, objective):
                    return next_code_vectors, next_sigma
                code_vectors, sigma = next_code_vectors, next_sigma
            elif step.reject():
                return second, second_sigma
            next_code_vectors = None
        if not landed:
            code_vectors, sigma = second, second_sigma
        second = None
        if length == 1.0 or landed:
            cap = cap * _CAP_FACTOR if at_cap else cap
        else:
            cap = max(1.0, cap / _CAP_FACTOR)
