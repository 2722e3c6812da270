"""The annealing loop of KerDenSOM: E-step, width update, code-vector update.

Two sets of update rules share the loop (``objective``):

``"likelihood"``
    Exact EM steps of the penalised kernel-density negative log-likelihood
    ``F(V, s) = -sum_k log((1/K) sum_c kernel(x_k; v_c, s)) + w * trace(V.T P V) / (2 s)``
    (reference §4 and §9; ``w`` is :func:`._kernels.penalty_weight`): memberships
    from the current state, code vectors from an exact solve, then the width
    from the new code vectors. ``F`` never increases within an annealing step.

``"xmipp"``
    Xmipp's rules (reference §5; for the Student-t kernel the legacy program of
    §7): the width is updated from the code vectors *before* their update, the
    code vectors by Gauss-Seidel sweeps, and for the Gaussian kernel squared
    distances are divided by the number of features inside the memberships.

Both stop an annealing step when the relative change of the width is <= ``tol``
or after ``max_iter`` iterations, and carry the state over to the next step.
Xmipp stops at the first such change; the likelihood rules wait for two in a
row, because a width computed from float32 products wobbles by about 1e-6 of
itself (more for well-separated clusters), and one lucky reading below ``tol``
stopped float32 fits early.
"""

import time
from dataclasses import dataclass, field

import numpy as np

from ._acceleration import iterate_squarem
from ._code_vectors import gauss_seidel_sweeps, roughness, solve_exactly
from ._kernels import kernel_variance, penalty_weight, updated_sigma
from ._progress import report


@dataclass
class Problem:
    """What stays fixed during a fit: the samples (with their frame and compute dtype) and the settings."""

    samples: object
    smoothness: np.ndarray
    kernel: str
    df: float
    objective: str
    storage_dtype: np.dtype
    sigma_floor: float
    # Extrapolated EM steps (see :mod:`._acceleration`); the likelihood rules only.
    accelerated: bool = False
    # The code vectors whose roughness was asked for last, and that roughness (see :meth:`roughness`).
    _last_roughness: tuple = field(default=(None, 0.0), repr=False, compare=False)

    @property
    def n_samples(self):
        return self.samples.shape[0]

    @property
    def n_features(self):
        return self.samples.n_features

    def roughness(self, code_vectors):
        """``trace(V.T P V)`` of the code vectors (:func:`._code_vectors.roughness`).

        An EM path asks for the roughness of each state twice, for the width of the iteration that made
        it and for the objective of the next: the last value is kept for the same (never modified)
        array, which spares a product of the smoothness with every code vector per iteration.
        """
        last_code_vectors, last_roughness = self._last_roughness
        if code_vectors is not last_code_vectors:
            last_roughness = roughness(code_vectors, self.smoothness)
            self._last_roughness = (code_vectors, last_roughness)
        return last_roughness

    def variance(self, sigma):
        return kernel_variance(sigma, self.n_features, self.kernel, self.objective)

    def penalized_objective(self, log_likelihood, code_vectors_roughness, sigma, regularization):
        """``F`` of the module docstring, from a pass's log-likelihood."""
        weight = penalty_weight(regularization, self.n_features, self.kernel, self.df)
        penalty = weight * code_vectors_roughness / (2.0 * self.variance(sigma))
        return -log_likelihood + penalty

    def updated_sigma(self, weighted_sq_distance, code_vectors_roughness, regularization):
        sigma = updated_sigma(
            weighted_sq_distance,
            code_vectors_roughness,
            regularization,
            self.n_samples,
            self.n_features,
            self.kernel,
            self.df,
            self.objective,
        )
        return max(sigma, self.sigma_floor)


@dataclass
class StepTrace:
    """One annealing step, iteration by iteration.

    ``objective``, ``sigma`` and ``sigma_change`` hold one entry per state of the step's path; a pass
    from an extrapolated state that was rejected (see :mod:`._acceleration`) is counted in
    ``n_rejected`` only, as it is no state of the path.
    """

    regularization: float
    tol: float = 0.0
    converged: bool = False
    sigma: list = field(default_factory=list)
    sigma_change: list = field(default_factory=list)
    objective: list = field(default_factory=list)
    gauss_seidel_sweeps: list = field(default_factory=list)
    n_rejected: int = 0

    @property
    def n_iter(self):
        """Passes over the samples: the iterations of the path and the rejected extrapolations."""
        return len(self.sigma) + self.n_rejected

    def settled(self, n_readings):
        """Whether the last ``n_readings`` relative changes of the width were all <= ``tol``."""
        last = self.sigma_change[-n_readings:]
        return len(last) == n_readings and max(last) <= self.tol

    def summary(self, frame, n_samples, n_features):
        """The public ``annealing_history_`` entry of this step, with the width and objective in the units
        of the data (those of the internal coordinates but for a power-of-two scale)."""
        objective = frame.negative_log_likelihood_to_raw(np.asarray(self.objective), n_samples, n_features)
        return {
            "regularization": self.regularization,
            "sigma": frame.variance_to_raw(self.sigma[-1]),
            "objective": float(objective[-1]),
            "n_iter": self.n_iter,
            "n_rejected": self.n_rejected,
            "converged": self.converged,
            "objective_per_iteration": objective,
        }


def _expectation(problem, code_vectors, sigma, regularization):
    """E-step pass: the statistics, the roughness and the objective at the given state."""
    statistics = problem.samples.e_step(
        code_vectors,
        problem.variance(sigma),
        problem.kernel,
        problem.df,
        problem.storage_dtype,
    )
    current_roughness = problem.roughness(code_vectors)
    objective = problem.penalized_objective(
        statistics.log_likelihood, current_roughness, sigma, regularization
    )
    return statistics, current_roughness, objective


def _xmipp_iteration(problem, code_vectors, sigma, regularization, trace):
    """Xmipp's ``mainIterations`` body: memberships, width from the old code vectors, Gauss-Seidel."""
    statistics, old_roughness, objective = _expectation(problem, code_vectors, sigma, regularization)
    new_sigma = problem.updated_sigma(statistics.weighted_sq_distance, old_roughness, regularization)
    code_vectors, n_sweeps, _ = gauss_seidel_sweeps(
        statistics.mass,
        statistics.weighted_sums,
        code_vectors,
        problem.smoothness,
        regularization,
        problem.storage_dtype,
    )
    trace.gauss_seidel_sweeps.append(n_sweeps)
    return code_vectors, new_sigma, objective


def _likelihood_iteration(problem, code_vectors, sigma, regularization, trace=None):
    """One EM step: memberships, exact code-vector solve, width from the new code vectors."""
    statistics, _, objective = _expectation(problem, code_vectors, sigma, regularization)
    code_vectors = solve_exactly(
        statistics.mass,
        statistics.weighted_sums,
        code_vectors,
        problem.smoothness,
        regularization,
    )
    new_sigma = problem.updated_sigma(
        statistics.weighted_sq_distance_to(code_vectors),
        problem.roughness(code_vectors),
        regularization,
    )
    return code_vectors, new_sigma, objective


_ITERATIONS = {"xmipp": _xmipp_iteration, "likelihood": _likelihood_iteration}
# Consecutive changes of the width <= tol that end a step (see the module docstring).
_SETTLING_READINGS = {"xmipp": 1, "likelihood": 2}


@dataclass
class AnnealingStep:
    """One annealing step of a fit, run iteration by iteration by :func:`iterate_plainly` or
    :func:`._acceleration.iterate_squarem`: its iterations, their record and the stopping rule."""

    problem: Problem
    trace: StepTrace
    max_iter: int
    number: int
    n_steps: int
    verbose: int = 0

    @property
    def regularization(self):
        return self.trace.regularization

    @property
    def sigma_floor(self):
        return self.problem.sigma_floor

    def evaluate(self, code_vectors, sigma):
        """One iteration from the given state, not yet recorded.

        Returns
        -------
        code_vectors : ndarray of shape (n_nodes, n_features), float64
        sigma : float
            The state the iteration leads to.
        objective : float
            The objective at the given state.
        """
        iteration = _ITERATIONS[self.problem.objective]
        return iteration(self.problem, code_vectors, sigma, self.regularization, self.trace)

    def record(self, sigma, new_sigma, objective):
        """Record an iteration of the path from width ``sigma`` to ``new_sigma``; whether the step ends."""
        trace = self.trace
        change = abs(sigma / new_sigma - 1.0)
        trace.objective.append(objective)
        trace.sigma.append(new_sigma)
        trace.sigma_change.append(change)
        if self.verbose >= 2:
            print(
                f"[KerDenSOM] step {self.number + 1} iteration {trace.n_iter}: "
                f"sigma={new_sigma:.6g} change={change:.3g} objective={objective:.8g}"
            )
        # A width held at its floor stays there: waiting for a second reading tells nothing more.
        trace.converged = trace.settled(_SETTLING_READINGS[self.problem.objective]) or (
            change == 0.0 and new_sigma == self.sigma_floor
        )
        return self._reported()

    def reject(self):
        """Count a pass whose state left the path; whether the step ends (at ``max_iter``)."""
        self.trace.n_rejected += 1
        return self._reported()

    def iterate(self, code_vectors, sigma):
        """One recorded iteration: the new state and whether the step ends."""
        new_code_vectors, new_sigma, objective = self.evaluate(code_vectors, sigma)
        return new_code_vectors, new_sigma, self.record(sigma, new_sigma, objective)

    def _reported(self):
        done = self.trace.converged or self.trace.n_iter >= self.max_iter
        report(self.number, self.n_steps, self.trace.n_iter, self.max_iter, done)
        return done


def iterate_plainly(step, code_vectors, sigma):
    """Iterate ``step`` until it ends: the state of its last iteration."""
    done = False
    while not done:
        code_vectors, sigma, done = step.iterate(code_vectors, sigma)
    return code_vectors, sigma


def anneal(problem, code_vectors, sigma, schedule, max_iter, tols, verbose=0, start=None):
    """Run every annealing step of ``schedule`` from the given state.

    Parameters
    ----------
    problem : Problem
    code_vectors : ndarray of shape (n_nodes, n_features)
        Initial code vectors, internal coordinates, float64 (the fit iterates them as
        ``problem.samples.fit_coordinates`` gives them).
    sigma : float
        Initial width in the objective's convention.
    schedule : list of float
        Regularization of each annealing step.
    max_iter : int
        Maximum inner iterations per step.
    tols : list of float
        Tolerance of each step: it stops when ``|sigma_old / sigma_new - 1| <= tol``.
    verbose : int
        1 prints a line per step, 2 also a line per iteration.
    start : float, default=None
        ``time.perf_counter()`` at the start of the fit, from which the messages count the elapsed
        time (a subspace fit's include its basis); None: the start of this call.

    Returns
    -------
    code_vectors : ndarray of shape (n_nodes, n_features), float64
        As the fit iterates them (for :class:`._subspace.ResidualSamples`, with residual coefficients).
    sigma : float
    traces : list of StepTrace
    """
    n_steps = len(schedule)
    code_vectors = problem.samples.fit_coordinates(code_vectors)
    iterate = iterate_squarem if problem.accelerated else iterate_plainly
    sigma = max(sigma, problem.sigma_floor)
    traces = []
    start = time.perf_counter() if start is None else start
    for number, (regularization, tol) in enumerate(zip(schedule, tols, strict=True)):
        trace = StepTrace(regularization=regularization, tol=tol)
        step = AnnealingStep(problem, trace, max_iter, number, n_steps, verbose)
        code_vectors, sigma = iterate(step, code_vectors, sigma)
        traces.append(trace)
        if verbose:
            rejected = f" (rejected extrapolations: {trace.n_rejected})" if trace.n_rejected else ""
            print(
                f"[KerDenSOM] step {number + 1}/{n_steps}: regularization={regularization:.6g} "
                f"sigma={sigma:.6g} iterations={trace.n_iter}{rejected} objective={trace.objective[-1]:.8g} "
                f"elapsed={time.perf_counter() - start:.2f}s"
            )
    return code_vectors, sigma, traces
