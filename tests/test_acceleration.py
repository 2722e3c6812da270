"""SQUAREM extrapolation of the EM iterations (acceleration)."""

from functools import cache

import numpy as np
import pytest
from sklearn.datasets import make_blobs

from sklearn_kerdensom import KerDenSOM
from sklearn_kerdensom._acceleration import iterate_squarem
from sklearn_kerdensom._training import StepTrace, iterate_plainly
from sklearn_kerdensom.datasets import make_adk_path


class LinearStep:
    """An annealing step whose iteration is the slow linear contraction ``x -> fixed + rate (x - fixed)``
    (the code vectors) with the width following the first coordinate, and the objective ``|x - fixed|^2``
    (or a given function of the state): the interface of ``_training.AnnealingStep``."""

    sigma_floor = 1e-12

    def __init__(self, rates, tol=1e-10, max_iter=10_000, objective=None):
        self.rates = np.asarray(rates, dtype=float)
        self.fixed = np.linspace(1.0, 2.0, self.rates.size)
        self.trace = StepTrace(regularization=1.0, tol=tol)
        self.max_iter = max_iter
        self.objective = objective or (lambda state: float(np.sum((state - self.fixed) ** 2)))
        self.evaluated = []

    def evaluate(self, code_vectors, sigma):
        self.evaluated.append(code_vectors.copy())
        new = self.fixed + self.rates * (code_vectors - self.fixed)
        return new, 1.0 + new[0] ** 2, self.objective(code_vectors)

    def record(self, sigma, new_sigma, objective):
        self.trace.objective.append(objective)
        self.trace.sigma.append(new_sigma)
        self.trace.sigma_change.append(abs(sigma / new_sigma - 1.0))
        self.trace.converged = self.trace.settled(2)
        return self.trace.converged or self.trace.n_iter >= self.max_iter

    def reject(self):
        self.trace.n_rejected += 1
        return self.trace.n_iter >= self.max_iter

    def iterate(self, code_vectors, sigma):
        new, new_sigma, objective = self.evaluate(code_vectors, sigma)
        return new, new_sigma, self.record(sigma, new_sigma, objective)


def test_squarem_reaches_a_slow_fixed_point_in_a_fraction_of_the_passes():
    start = np.zeros(4)
    plain, accelerated = LinearStep([0.99, 0.98, 0.5, 0.1]), LinearStep([0.99, 0.98, 0.5, 0.1])
    plain_end, _ = iterate_plainly(plain, start, 1.0)
    accelerated_end, _ = iterate_squarem(accelerated, start, 1.0)
    assert plain.trace.converged and accelerated.trace.converged
    assert accelerated.trace.n_iter * 5 < plain.trace.n_iter
    np.testing.assert_allclose(accelerated_end, plain.fixed, atol=1e-6)
    np.testing.assert_allclose(plain_end, plain.fixed, atol=1e-6)
    # Every state of the accelerated path has an objective no higher than the one before it.
    assert np.all(np.diff(accelerated.trace.objective) <= 0)


def test_squarem_with_every_jump_rejected_follows_the_plain_path():
    """An objective that every jump raises: each is counted and the path is plain EM's, state by state."""
    rates = [0.9, 0.8]
    plain = LinearStep(rates, tol=1e-6)
    iterate_plainly(plain, np.zeros(2), 1.0)

    def rejects_jumps(state):
        on_plain_path = any(np.array_equal(state, visited) for visited in plain.evaluated)
        return 0.0 if on_plain_path else np.inf

    accelerated = LinearStep(rates, tol=1e-6, objective=rejects_jumps)
    end, _ = iterate_squarem(accelerated, np.zeros(2), 1.0)
    assert accelerated.trace.n_rejected > 0
    assert accelerated.trace.n_iter == len(plain.trace.sigma) + accelerated.trace.n_rejected
    assert accelerated.trace.sigma == plain.trace.sigma
    np.testing.assert_array_equal(end, plain.fixed + plain.rates * (plain.evaluated[-1] - plain.fixed))


def test_a_rejected_jump_counts_against_max_iter():
    step = LinearStep([0.99], tol=0.0, max_iter=7, objective=lambda state: np.inf)
    iterate_squarem(step, np.zeros(1), 1.0)
    assert step.trace.n_iter == 7
    assert step.trace.n_rejected > 0 and not step.trace.converged


@cache
def particles(n_samples):
    return make_adk_path(n_samples, snr=0.1, random_state=0).images.reshape(n_samples, -1)


# A subspace fit of 400 particles, like the full fit, spends all but its first step in 3-4 passes each, with
# nothing to gain: there the plain iterations took 47 passes and the extrapolated 50 (with 2000, 76 and 51).
@pytest.mark.parametrize("n_samples, subspace_components", [(400, None), (2000, 8)])
def test_accelerated_fit_reaches_the_plain_map_in_fewer_passes(n_samples, subspace_components):
    fits = {
        acceleration: KerDenSOM(
            5, 4, acceleration=acceleration, subspace_components=subspace_components, random_state=0
        ).fit(particles(n_samples))
        for acceleration in ("auto", None)
    }
    accelerated, plain = fits["auto"], fits[None]
    assert accelerated.converged_ and plain.converged_
    assert accelerated.n_iter_ < plain.n_iter_
    # The same fixed point, to the stopping rule's precision: same objective, same classes.
    np.testing.assert_allclose(
        accelerated.annealing_history_[-1]["objective"], plain.annealing_history_[-1]["objective"], rtol=1e-6
    )
    assert np.mean(accelerated.labels_ == plain.labels_) > 0.97
    for step in accelerated.annealing_history_:
        assert len(step["objective_per_iteration"]) == step["n_iter"] - step["n_rejected"]
        assert np.all(np.diff(step["objective_per_iteration"]) <= 1e-9 * np.abs(step["objective"]))
    assert accelerated.n_iter_ == sum(step["n_iter"] for step in accelerated.annealing_history_)


def test_acceleration_none_is_plain_em_and_auto_leaves_xmipp_rules_alone():
    X = make_blobs(300, 6, centers=4, random_state=0)[0]
    plain = KerDenSOM(3, 3, acceleration=None, random_state=0).fit(X)
    assert all(step["n_rejected"] == 0 for step in plain.annealing_history_)
    xmipp = KerDenSOM(3, 3, objective="xmipp", random_state=0).fit(X)
    unaccelerated = KerDenSOM(3, 3, objective="xmipp", acceleration=None, random_state=0).fit(X)
    np.testing.assert_array_equal(xmipp.cluster_centers_, unaccelerated.cluster_centers_)
    assert xmipp.n_iter_ == unaccelerated.n_iter_


def test_squarem_with_xmipp_rules_is_refused():
    X = make_blobs(50, 4, random_state=0)[0]
    with pytest.raises(ValueError, match="acceleration='squarem' needs objective='likelihood'"):
        KerDenSOM(2, 2, objective="xmipp", acceleration="squarem").fit(X)
