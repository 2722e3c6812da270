"""The KerDenSOM estimator: a kernel-density self-organizing map."""

import time
import warnings
from dataclasses import dataclass, replace
from numbers import Integral, Real

import numpy as np
from sklearn.base import (
    BaseEstimator,
    ClassNamePrefixFeaturesOutMixin,
    ClusterMixin,
    TransformerMixin,
    _fit_context,
)
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_array, check_random_state
from sklearn.utils._array_api import check_same_namespace, get_namespace
from sklearn.utils._openmp_helpers import _openmp_effective_n_threads
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

from ._annealing import regularization_schedule
from ._array_api import astype, is_numpy_or_dask, like, mean_of, numpy_dtype, to_numpy
from ._frame import fit_frame
from ._initialization import (
    from_memberships,
    pca_code_vectors,
    random_memberships,
    width_from_nearest,
)
from ._kernels import KERNELS, OBJECTIVES, sigma_from_kernel_variance
from ._passes import (
    distance_rows,
    log_density_rows,
    membership_rows,
    nearest_nodes,
    nearest_rows,
    per_sample,
)
from ._samples import check_dask_samples, is_dask_array, samples_of, warn_if_memory_map_is_copied
from ._subspace import code_vectors_in_features, fit_subspace, reduce_samples
from ._topology import (
    SMOOTHNESS_KINDS,
    TOPOLOGIES,
    check_map_fits_in_memory,
    node_positions,
    smoothness_matrix,
)
from ._training import Problem, anneal

# The kernel variance never drops below this fraction of the data's variance per
# feature (their mean square when they have none), so duplicated or single
# samples cannot make it 0 (and the memberships 0 / 0).
_RELATIVE_VARIANCE_FLOOR = 1e-12

_MEMBERSHIP_SUM_TOL = 1e-4

# Data are fitted centred when their squared offset exceeds this many times their variance (see
# _frame.py): for the likelihood whenever the offset exceeds the spread; for Xmipp's rules, which round in
# raw coordinates, only where its float64 distances would lose their digits (offset > 8192 x spread).
_CENTRE_ABOVE = {"likelihood": 1.0, "xmipp": 2.0**26}
# smoothness="auto" and the regularization schedules of reg_initial=None, reg_final=None. The likelihood's
# are the best of benchmarks/bench_quality.py's variants (README, "Map quality"); Xmipp's are its own.
_AUTO_SMOOTHNESS = {"likelihood": "bending", "xmipp": "membrane"}
# Tolerance of the annealing steps between the first and the last for annealing_tol="auto" (None: ``tol``,
# as Xmipp); benchmarks/results/bench_quality_annealing_tol.json measured 1e-7 to 1e-4.
ANNEALING_TOL = 1e-5
_AUTO_ANNEALING_TOL = {"likelihood": ANNEALING_TOL, "xmipp": None}
_DEFAULT_REGULARIZATION = {"bending": (1e4, 200.0), "membrane": (1000.0, 200.0)}


class _Count(Interval):
    """An integer interval that refuses booleans: ``n_columns=True`` is a mistake, not a map of 1."""

    def __init__(self, left):
        super().__init__(Integral, left, None, closed="left")

    def is_satisfied_by(self, val):
        return not isinstance(val, bool) and super().is_satisfied_by(val)

    def __str__(self):
        return f"{super().__str__()} (not a bool)"


@dataclass(frozen=True)
class FittedSettings:
    """What a fitted map's predictions depend on, frozen at ``fit``: ``set_params`` afterwards changes
    the next fit, never the predictions of this one. ``kernel_variance`` is in internal units."""

    n_columns: int
    n_rows: int
    topology: str
    objective: str
    kernel: str
    df: float
    kernel_variance: float

    @property
    def n_nodes(self):
        return self.n_columns * self.n_rows


class KerDenSOM(ClassNamePrefixFeaturesOutMixin, TransformerMixin, ClusterMixin, BaseEstimator):
    """Kernel-density self-organizing map (KerDenSOM), as in Xmipp's ``classify_kerdensom``.

    The map is a grid of ``n_columns x n_rows`` nodes, each with a code vector;
    together they define a kernel density (an equal-weight mixture of isotropic
    kernels centred at the code vectors, with a common width). Fitting maximises
    the density's likelihood of the data penalised by the roughness of the map
    (by default its curvature; Xmipp's squared differences between neighbouring
    code vectors with ``smoothness="membrane"``), lowering the
    penalty's weight by deterministic annealing, so that neighbouring nodes end
    up with similar code vectors.

    Parameters
    ----------
    n_columns, n_rows : int, default=7
        Map size. Node ``c`` sits at column ``c % n_columns`` and row
        ``c // n_columns`` (Xmipp's ``--xdim`` and ``--ydim``).
    topology : {"rect", "hex"}, default="rect"
        ``"rect"``: 4 neighbours. ``"hex"``: 6 neighbours, odd rows shifted right
        by half a node. Unlike Xmipp, whose hexagonal neighbours ignore the row
        parity, the hexagonal neighbourhood here is symmetric.
    smoothness : {"auto", "membrane", "bending"}, default="auto"
        The roughness the regularization penalises. ``"membrane"`` (Xmipp's):
        squared differences between neighbouring code vectors, which pull the
        whole map together, so that the particles pile up on the border nodes.
        ``"bending"``: squared second differences along the map's lines (as in
        elastic maps), zero for any flat, evenly stretched map, so only the
        map's curvature is penalised and the map uses its interior; needs
        ``objective="likelihood"``. ``"auto"``: ``"bending"`` for
        ``objective="likelihood"``, ``"membrane"`` for ``"xmipp"``. The chosen
        kind is in ``smoothness_``.
    kernel : {"gaussian", "student_t"}, default="gaussian"
        Kernel of the density. ``"student_t"`` is the legacy Xmipp t-Student
        variant (heavier tails, robust to outliers).
    df : float, default=3.0
        Degrees of freedom of the Student-t kernel, > 0.
    reg_initial, reg_final : float or None, default=None
        Smoothness regularization of the first and last annealing steps, >= 0;
        the schedule is geometric. ``reg_initial = reg_final = 0`` is kernel
        c-means (one step without smoothness). None takes the smoothness
        kind's default: 1e4 and 200 for ``"bending"`` (chosen on
        ``benchmarks/bench_quality.py``: a strong first step organizes the map
        before the weaker ones let it spread; ending at 50 instead split the
        states of one data set), Xmipp's 1000 and 200 for ``"membrane"``.
    annealing_steps : int, default=5
        Number of annealing steps. With 1, the only step uses ``reg_final``.
    objective : {"likelihood", "xmipp"}, default="likelihood"
        ``"likelihood"``: exact EM steps of the penalised kernel-density
        log-likelihood (exact code-vector solve); the objective never increases
        within a step. ``"xmipp"``: Xmipp's update rules, reproducing its
        trajectories: squared distances divided by ``n_features`` inside the
        Gaussian memberships, the width updated from the previous code vectors,
        Gauss-Seidel code-vector sweeps, float64 accumulation and (for float32
        data) float32 storage of memberships and code vectors.
    max_iter : int, default=200
        Maximum inner iterations per annealing step.
    tol : float, default=1e-7
        The first and the last annealing steps stop when the relative change
        of the width is <= ``tol`` (for ``"likelihood"``, on two iterations in a row: a
        width computed from float32 data wobbles by about 1e-6 of itself).
    annealing_tol : float or "auto", default="auto"
        The same for the steps between the first and the last: they only
        carry the map to the next, weaker regularization, which keeps moving
        it. The first step is held to ``tol``: it forgets the initial map
        (whose PCA subsample depends on ``random_state``); ending it early too
        left maps that differ more between seeds. ``"auto"``: ``1e-5`` for
        ``"likelihood"`` (measured in ``benchmarks/bench_quality.py``: 37 %
        fewer iterations than ``tol`` in every step, every map measure within
        its seed-to-seed spread), ``tol`` for ``"xmipp"`` (Xmipp stops every
        step at the same tolerance).
    subspace_components : int or None, default=None
        Fit in the principal subspace of this many dimensions (a randomized
        PCA of up to 20 000 samples) instead of on every feature: a pass
        costs about ``subspace_components + 1`` instead of ``n_features``
        products per sample and node. Each sample keeps its residual outside
        the subspace as a direction of its own, so that distances, kernel
        width and objective are those of the full problem but for the
        products of different samples' residuals, which noise makes nearly
        zero; one last pass over the samples puts the code vectors back in
        the space of the features, with their members' residuals. The
        subspace depends on the data alone, not on ``random_state``. A Dask
        array's coordinates are computed on its workers and fitted in
        memory, which holds a few float64 arrays of ``n_samples x n_nodes``.
        Its maps differ a little from the full fit's (measured in
        ``benchmarks/bench_quality.py``: see the README), so it is not the
        default. None fits on every feature. Needs
        ``objective="likelihood"``.
    acceleration : {"auto", "squarem"} or None, default="auto"
        ``"squarem"``: extrapolate the EM iterations of every annealing step
        (SQUAREM, Varadhan & Roland 2008): after two iterations the state
        jumps along the parabola through them, and a jump that raises the
        objective is rejected, so the objective still never increases along a
        step; the steps reach their tolerance in fewer passes (on 20 000
        images of 64x64, 124 instead of 218 for the default fit).
        Each pass counts in ``n_iter_``, a rejected jump too. None: one plain
        EM iteration after the other. ``"auto"``: ``"squarem"`` for
        ``"likelihood"``, None for ``"xmipp"`` (whose rules are no EM
        iteration to extrapolate, and whose trajectories are reproduced).
    n_jobs : int or None, default=None
        Threads that run the chunks of every pass over the samples, each
        chunk's matrix products on one BLAS thread (as scikit-learn's KMeans):
        this holds up on a machine whose cores other work shares, where
        BLAS's own threads wait for each other at every product. None: as
        many as the physical cores this process may use (``OMP_NUM_THREADS``
        and CPU quotas respected, as KMeans counts its threads); -1: every
        core; a negative ``n`` leaves ``-n - 1`` cores free. Dask arrays run
        on Dask's own workers instead.
    init : {"pca", "random"} or array-like of shape (n_samples, n_nodes), default="pca"
        ``"pca"``: code vectors on a grid in the plane of the first two principal
        components. ``"random"``: random memberships (Xmipp). An array:
        initial memberships, non-negative, rows summing to 1, used as given.
    standardize : bool, default=False
        Z-score every feature before fitting (Xmipp's ``--norm``; constant
        features are left as they are); code vectors are mapped back.
    random_state : int, RandomState instance or None, default=None
        Seeds the random memberships and the PCA of ``init``.
    verbose : int, default=0
        1 prints a line per annealing step, 2 also a line per iteration.

    Attributes
    ----------
    cluster_centers_ : ndarray of shape (n_nodes, n_features)
        Code vectors in map order, in the units of ``X``.
    smoothness_ : {"membrane", "bending"}
        The smoothness kind of the fit (``smoothness`` with ``"auto"`` resolved).
    labels_ : ndarray of shape (n_samples,)
        ``predict(X)`` of the training data: the node of highest membership.
    sigma_ : float
        Fitted kernel width in the objective's convention: the kernel variance
        (in squared units of ``X``, or of its z-scores with ``standardize``) for
        ``"likelihood"`` and for the Student-t kernel; for Xmipp's Gaussian rule
        that variance divided by ``n_features`` (reference §9).
    n_iter_ : int
        Total inner iterations over all annealing steps.
    converged_ : bool
        Whether every annealing step met ``tol`` before ``max_iter`` (a
        ConvergenceWarning names the steps that did not; their
        ``annealing_history_`` entries have ``"converged": False``).
    annealing_history_ : list of dict
        One dict per annealing step with ``"regularization"``, ``"sigma"``
        (width at the end of the step), ``"objective"`` (penalised negative
        log-likelihood, summed over samples, at the step's last E-step),
        ``"n_iter"`` (passes over the samples), ``"n_rejected"`` (of them, the
        passes from rejected extrapolations, see ``acceleration``),
        ``"converged"`` and ``"objective_per_iteration"`` (one entry per state
        of the step's path: ``n_iter - n_rejected`` entries).
    subspace_components_ : int or None
        Dimensions of the subspace the fit ran in: ``subspace_components``,
        or fewer when the data have fewer features, or the basis fewer
        samples (a subspace cannot have more dimensions than either); None
        for a fit on every feature.
    node_positions_ : ndarray of shape (n_nodes, 2)
        Grid coordinates of the nodes: x (column; +0.5 on odd rows of a
        hexagonal map) and y (row).
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Defined when ``X`` has feature names that are all strings.

    References
    ----------
    Pascual-Montano et al. (2001), "A novel neural network technique for
    analysis and classification of EM single-particle images", J. Struct.
    Biol. 133:233-245.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_kerdensom import KerDenSOM
    >>> X = np.random.default_rng(0).normal(size=(200, 16))
    >>> som = KerDenSOM(4, 3, random_state=0).fit(X)
    >>> som.cluster_centers_.shape
    (12, 16)
    """

    _parameter_constraints: dict = {
        "n_columns": [_Count(1)],
        "n_rows": [_Count(1)],
        "topology": [StrOptions(set(TOPOLOGIES))],
        "smoothness": [StrOptions({"auto", *SMOOTHNESS_KINDS})],
        "kernel": [StrOptions(set(KERNELS))],
        "df": [Interval(Real, 0, None, closed="neither")],
        "reg_initial": [Interval(Real, 0, None, closed="left"), None],
        "reg_final": [Interval(Real, 0, None, closed="left"), None],
        "annealing_steps": [_Count(1)],
        "objective": [StrOptions(set(OBJECTIVES))],
        "max_iter": [_Count(1)],
        "tol": [Interval(Real, 0, None, closed="left")],
        "annealing_tol": [Interval(Real, 0, None, closed="left"), StrOptions({"auto"})],
        "subspace_components": [_Count(1), None],
        "acceleration": [StrOptions({"auto", "squarem"}), None],
        "n_jobs": [_Count(1), Interval(Integral, None, -1, closed="right"), None],
        "init": [StrOptions({"pca", "random"}), "array-like"],
        "standardize": ["boolean"],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        n_columns=7,
        n_rows=7,
        *,
        topology="rect",
        smoothness="auto",
        kernel="gaussian",
        df=3.0,
        reg_initial=None,
        reg_final=None,
        annealing_steps=5,
        objective="likelihood",
        max_iter=200,
        tol=1e-7,
        annealing_tol="auto",
        subspace_components=None,
        acceleration="auto",
        n_jobs=None,
        init="pca",
        standardize=False,
        random_state=None,
        verbose=0,
    ):
        self.n_columns = n_columns
        self.n_rows = n_rows
        self.topology = topology
        self.smoothness = smoothness
        self.kernel = kernel
        self.df = df
        self.reg_initial = reg_initial
        self.reg_final = reg_final
        self.annealing_steps = annealing_steps
        self.objective = objective
        self.max_iter = max_iter
        self.tol = tol
        self.annealing_tol = annealing_tol
        self.subspace_components = subspace_components
        self.acceleration = acceleration
        self.n_jobs = n_jobs
        self.init = init
        self.standardize = standardize
        self.random_state = random_state
        self.verbose = verbose

    @property
    def n_nodes(self):
        """Number of map nodes, ``n_columns * n_rows`` (as Python ints: NumPy's small ints overflow)."""
        return int(self.n_columns) * int(self.n_rows)

    @staticmethod
    def _dtypes(objective, data_dtype):
        """Compute and storage dtypes: Xmipp accumulates in float64 and stores in the data's dtype."""
        if objective == "xmipp":
            return np.dtype(np.float64), np.dtype(data_dtype)
        return np.dtype(data_dtype), np.dtype(np.float64)

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Fit the map to ``X``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training vectors (e.g. masked, aligned particle images). float32 and
            float64 are kept; other numeric types are converted to float64. A
            memory map is read chunk by chunk; a Dask array chunked along
            samples is fitted with one Dask task per block and iteration.
            Under scikit-learn's ``array_api_dispatch``, an array of another
            Array API namespace (e.g. a CUDA tensor) is fitted on its device,
            and the fitted arrays live there too (``objective="likelihood"``,
            without ``subspace_components``).
        y : Ignored

        Returns
        -------
        self : KerDenSOM
        """
        X = self._validated_input(X, reset=True)
        smoothness, schedule = self._annealing_rules()
        if not is_numpy_or_dask(X):
            self._check_array_api_support()
        random_state = check_random_state(self.random_state)
        data_dtype = numpy_dtype(X.dtype)
        dtype, storage_dtype = self._dtypes(self.objective, data_dtype)
        n_columns, n_rows = int(self.n_columns), int(self.n_rows)
        check_map_fits_in_memory(n_columns, n_rows, dense=self.objective == "xmipp")
        # The frame's first pass reads every value and stops at NaN and infinities (a Dask array's blocks
        # are checked as they are read): the fit's hundreds of passes need not check them again.
        n_threads = self._n_threads()
        frame = fit_frame(X, self.standardize, dtype, _CENTRE_ABOVE[self.objective], n_threads)
        if frame.spread == 0.0:
            # The width's floor is relative to the data's scale: with none, any other sample would be
            # infinitely far from the map, and its memberships NaN.
            raise ValueError("X is all zeros: a map needs samples with at least one non-zero value.")
        samples = samples_of(
            X, frame, dtype, self.n_nodes, values_checked=True, n_threads=n_threads
        ).cache_terms()
        n_features = X.shape[1]
        variance_floor = _RELATIVE_VARIANCE_FLOOR * frame.spread
        problem = Problem(
            samples=samples,
            smoothness=smoothness_matrix(n_columns, n_rows, self.topology, smoothness),
            kernel=self.kernel,
            df=float(self.df),
            objective=self.objective,
            storage_dtype=storage_dtype,
            sigma_floor=sigma_from_kernel_variance(
                max(variance_floor, np.finfo(np.float64).tiny),
                n_features,
                self.kernel,
                self.objective,
            ),
            accelerated=self._accelerated(),
        )
        code_vectors, sigma, traces, self.subspace_components_ = self._anneal(problem, schedule, random_state)

        self._frame = frame
        # In the namespace and on the device of X (all fitted arrays are, as scikit-learn's
        # array_api_dispatch has it); the passes take them on the host (_host_centers).
        self._internal_centers = like(code_vectors, X)
        self._fitted = FittedSettings(
            n_columns=n_columns,
            n_rows=n_rows,
            topology=self.topology,
            objective=self.objective,
            kernel=self.kernel,
            df=float(self.df),
            kernel_variance=problem.variance(sigma),
        )
        self.smoothness_ = smoothness
        self.cluster_centers_ = like(frame.to_raw(code_vectors).astype(data_dtype), X)
        self.sigma_ = frame.variance_to_raw(float(sigma))
        self.annealing_history_ = [trace.summary(frame, *X.shape) for trace in traces]
        self.n_iter_ = sum(trace.n_iter for trace in traces)
        capped = [number for number, step in enumerate(self.annealing_history_, 1) if not step["converged"]]
        self.converged_ = not capped
        self.node_positions_ = like(node_positions(n_columns, n_rows, self.topology), X)
        self._n_features_out = self.n_nodes
        self.labels_ = like(nearest_nodes(samples, code_vectors)[0], X)
        if capped:
            # An early step that stops short hands an unsettled map to the next one: as visible as the last.
            steps = ", ".join(map(str, capped))
            warnings.warn(
                f"Annealing step {steps} of {len(schedule)} stopped at max_iter={self.max_iter} before the "
                f"kernel width converged to its tolerance ({self._tolerance_names(len(schedule), capped)}); "
                "increase max_iter.",
                ConvergenceWarning,
                stacklevel=2,
            )
        return self

    def _annealing_rules(self):
        """The smoothness kind and the regularization schedule of a fit, ``"auto"`` and None resolved.

        Raises ValueError for a schedule annealing cannot follow and for a smoothness kind the
        objective has no rules for; the command line calls it before reading any data.
        """
        smoothness = self.smoothness
        if smoothness == "auto":
            smoothness = _AUTO_SMOOTHNESS[self.objective]
        if smoothness != "membrane" and self.objective == "xmipp":
            raise ValueError(
                f"smoothness={smoothness!r} needs objective='likelihood': Xmipp's rules use its "
                "membrane penalty (their Gauss-Seidel sweeps need its diagonally dominant system)."
            )
        if self.acceleration == "squarem" and self.objective == "xmipp":
            raise ValueError(
                "acceleration='squarem' needs objective='likelihood': Xmipp's rules are no EM iteration "
                "(their objective may rise), so there is nothing safe to extrapolate; leave acceleration "
                "at 'auto' or None."
            )
        if self.subspace_components is not None and self.objective == "xmipp":
            raise ValueError(
                f"subspace_components={self.subspace_components} needs objective='likelihood': Xmipp's "
                "rules round and stop in the raw coordinates of every feature; leave subspace_components "
                "unset."
            )
        default_initial, default_final = _DEFAULT_REGULARIZATION[smoothness]
        try:
            schedule = regularization_schedule(
                default_initial if self.reg_initial is None else self.reg_initial,
                default_final if self.reg_final is None else self.reg_final,
                self.annealing_steps,
            )
        except ValueError as error:
            defaults = [
                f"{name}={value}"
                for name, value, given in (
                    ("reg_initial", default_initial, self.reg_initial),
                    ("reg_final", default_final, self.reg_final),
                )
                if given is None
            ]
            if not defaults:
                raise
            raise ValueError(
                f"{error} ({' and '.join(defaults)}: the default for smoothness={smoothness!r})"
            ) from None
        return smoothness, schedule

    def _check_array_api_support(self):
        """ValueError for the options that run on NumPy (and Dask) arrays only."""
        if self.objective == "xmipp":
            raise ValueError(
                "objective='xmipp' runs on NumPy arrays only (Xmipp's Gauss-Seidel sweeps and float32 "
                "rounding are host code); convert X to NumPy or use objective='likelihood'."
            )
        if self.subspace_components is not None:
            raise ValueError(
                "subspace_components runs on NumPy and Dask arrays only; leave it unset for arrays of "
                "other namespaces (a GPU runs the full-dimensional passes at its matrix-multiply rate)."
            )

    def _accelerated(self):
        """Whether the EM iterations are extrapolated (``acceleration`` with ``"auto"`` resolved)."""
        if self.acceleration == "auto":
            return self.objective == "likelihood"
        return self.acceleration == "squarem"

    def _tolerance_names(self, n_steps, steps):
        """``tol=...`` and/or ``annealing_tol=...``, as they apply to the given (1-based) steps."""
        names = []
        if any(1 < step < n_steps for step in steps):
            names.append(f"annealing_tol={self.annealing_tol!r}")
        if 1 in steps or n_steps in steps:
            names.append(f"tol={self.tol}")
        return ", ".join(names)

    def _step_tols(self, schedule):
        """The tolerance of each annealing step: ``tol`` for the first and the last, ``annealing_tol``
        between them."""
        annealing_tol = self.annealing_tol
        if annealing_tol == "auto":
            annealing_tol = _AUTO_ANNEALING_TOL[self.objective]
        if annealing_tol is None:
            annealing_tol = self.tol
        tols = [float(self.tol)] + [float(annealing_tol)] * (len(schedule) - 1)
        tols[-1] = float(self.tol)
        return tols

    def _anneal(self, problem, schedule, random_state):
        """Initial state and annealing: on every feature, or in a principal subspace (``subspace_components``)
        with each sample's residual as a direction of its own, the code vectors then put back in the
        samples' coordinates (see :mod:`._subspace`)."""
        tols = self._step_tols(schedule)
        if self.subspace_components is None:
            code_vectors, sigma = self._initialize(problem.samples, random_state, problem.storage_dtype)
            return (
                *anneal(problem, code_vectors, sigma, schedule, self.max_iter, tols, self.verbose),
                None,
            )
        start = time.perf_counter()
        subspace = fit_subspace(problem.samples, int(self.subspace_components))
        reduced = reduce_samples(problem.samples, subspace, self._n_threads())
        coordinates, sigma = self._initialize(reduced, random_state, problem.storage_dtype)
        code_vectors, sigma, traces = anneal(
            replace(problem, samples=reduced),
            coordinates,
            sigma,
            schedule,
            self.max_iter,
            tols,
            self.verbose,
            start=start,
        )
        code_vectors = code_vectors_in_features(problem.samples, subspace, reduced, code_vectors)
        return code_vectors, sigma, traces, subspace.n_components

    def _initialize(self, samples, random_state, storage_dtype):
        """Initial code vectors (internal coordinates, float64) and width."""
        n_samples = samples.shape[0]
        if isinstance(self.init, str) and self.init == "pca":
            code_vectors = pca_code_vectors(
                samples, int(self.n_columns), int(self.n_rows), self.topology, random_state
            )
            code_vectors = code_vectors.astype(storage_dtype).astype(np.float64)
            sigma = width_from_nearest(samples, code_vectors, self.kernel, self.objective)
            return code_vectors, sigma
        if isinstance(self.init, str):
            memberships = random_memberships(n_samples, self.n_nodes, random_state)
        else:
            memberships = self._checked_init_memberships(n_samples)
        return from_memberships(samples, memberships, storage_dtype)

    def _checked_init_memberships(self, n_samples):
        # Memberships are host data: the initial statistics move them to the samples' device chunk by chunk.
        memberships = check_array(to_numpy(self.init), dtype=[np.float64, np.float32], input_name="init")
        expected = (n_samples, self.n_nodes)
        if memberships.shape != expected:
            raise ValueError(
                f"init has shape {memberships.shape}, but initial memberships must have shape "
                f"(n_samples, n_nodes) = {expected}."
            )
        if np.any(memberships < 0):
            raise ValueError("init has negative entries; memberships must be >= 0.")
        row_sums = memberships.sum(axis=1, dtype=np.float64)
        worst = int(np.argmax(np.abs(row_sums - 1.0)))
        if abs(row_sums[worst] - 1.0) > _MEMBERSHIP_SUM_TOL:
            raise ValueError(
                f"init rows must sum to 1 (memberships of each sample); row {worst} sums to "
                f"{row_sums[worst]:.6g}."
            )
        return memberships

    def _validated_input(self, X, reset):
        """``X`` checked for a fit (``reset``) or a prediction: NumPy arrays and memory maps through
        scikit-learn's ``validate_data`` (no copy for float32/float64), Dask arrays kept lazy."""
        if not is_dask_array(X):
            # The input's namespace under scikit-learn's array_api_dispatch, NumPy otherwise.
            xp, _ = get_namespace(X)
            warn_if_memory_map_is_copied(X)
            return validate_data(self, X, dtype=[xp.float64, xp.float32], reset=reset)
        X = check_dask_samples(X)
        if reset:
            self.n_features_in_ = X.shape[1]
            if hasattr(self, "feature_names_in_"):
                del self.feature_names_in_
        elif X.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has {X.shape[1]} features, but KerDenSOM is expecting {self.n_features_in_} features "
                "as input."
            )
        return X

    def _samples(self, X, method):
        """Fitted-state checks, and the samples of ``X`` in the fitted frame (for ``method``'s messages)."""
        check_is_fitted(self)
        if not is_dask_array(X):
            check_same_namespace(X, self, attribute="cluster_centers_", method=method)
        X = self._validated_input(X, reset=False)
        data_dtype = numpy_dtype(X.dtype)
        dtype, _ = self._dtypes(self._fitted.objective, data_dtype)
        samples = samples_of(X, self._frame, dtype, self._fitted.n_nodes, n_threads=self._n_threads())
        return samples, data_dtype

    @property
    def _host_centers(self):
        """Code vectors in internal coordinates, float64, as a NumPy array."""
        return to_numpy(self._internal_centers)

    def _n_threads(self):
        return _openmp_effective_n_threads(self.n_jobs)

    def _kernel_parameters(self):
        fitted = self._fitted
        return {"variance": fitted.kernel_variance, "kernel": fitted.kernel, "df": fitted.df}

    def predict(self, X):
        """Node of highest membership (the nearest code vector) of each sample.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            A NumPy array, a memory map, or a Dask array chunked along samples.

        Returns
        -------
        labels : ndarray of shape (n_samples,)
            Node indices in ``0 .. n_nodes - 1`` (a lazy Dask array for Dask input).
        """
        samples, _ = self._samples(X, "predict")
        nearest = per_sample(samples, self._host_centers, nearest_rows, 2)
        return astype(nearest[:, 0], np.intp)

    def predict_proba(self, X):
        """Memberships: posterior probability of every node for each sample.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        memberships : ndarray of shape (n_samples, n_nodes)
            Rows sum to 1; the dtype of ``X`` (float32 or float64).
        """
        samples, dtype = self._samples(X, "predict_proba")
        memberships = per_sample(
            samples,
            self._host_centers,
            membership_rows,
            self._fitted.n_nodes,
            **self._kernel_parameters(),
        )
        return astype(memberships, dtype)

    def transform(self, X):
        """Euclidean distance of each sample to every code vector.

        Distances are measured where the map was fitted: in standardized units
        when ``standardize=True``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        distances : ndarray of shape (n_samples, n_nodes)
        """
        samples, dtype = self._samples(X, "transform")
        distances = per_sample(samples, self._host_centers, distance_rows, self._fitted.n_nodes)
        return astype(self._frame.distance_to_raw(distances), dtype)

    def score_samples(self, X):
        """Log density of each sample under the fitted kernel density.

        The density is the equal-weight mixture of the ``n_nodes`` kernels at
        the code vectors with the fitted kernel variance, expressed in the
        units of ``X`` (the Jacobian of the standardization is included).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        log_density : ndarray of shape (n_samples,), float64
        """
        samples, _ = self._samples(X, "score_samples")
        log_density = per_sample(samples, self._host_centers, log_density_rows, **self._kernel_parameters())
        return log_density + self._frame.log_jacobian(self.n_features_in_)

    def score(self, X, y=None):
        """Mean log density of ``X`` (higher is better), for model selection on held-out data.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : Ignored

        Returns
        -------
        score : float
        """
        return mean_of(self.score_samples(X))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        tags.array_api_support = True
        return tags
