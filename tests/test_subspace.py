"""Fitting in a principal subspace (``subspace_components``), and passes on several threads (``n_jobs``)."""

import numpy as np
import pytest
import sklearn
from sklearn.metrics import adjusted_rand_score

from sklearn_kerdensom import KerDenSOM
from sklearn_kerdensom import estimator as estimator_module
from sklearn_kerdensom._code_vectors import solve_exactly
from sklearn_kerdensom._frame import Frame, fit_frame
from sklearn_kerdensom._passes import e_step, weighted_statistics
from sklearn_kerdensom._samples import ChunkedSamples, samples_of
from sklearn_kerdensom._subspace import (
    ResidualSamples,
    code_vectors_in_features,
    fit_subspace,
    reduce_samples,
)
from sklearn_kerdensom._topology import smoothness_matrix
from sklearn_kerdensom._training import anneal


@pytest.fixture(scope="module")
def low_rank():
    """600 samples near a 3-dimensional subspace of 40 dimensions, float32, off the origin."""
    rng = np.random.default_rng(0)
    latent = rng.uniform(-1, 1, size=(600, 3))
    X = 5.0 + latent @ rng.normal(size=(3, 40)) + 0.1 * rng.normal(size=(600, 40))
    return X.astype(np.float32)


def _samples(X):
    frame = fit_frame(X, False, X.dtype)
    return samples_of(X, frame, X.dtype, 12).cache_terms()


@pytest.mark.parametrize("kernel", ["gaussian", "student_t"])
def test_a_pass_in_the_subspace_is_the_full_pass_at_the_lifted_code_vectors(low_rank, kernel):
    samples = _samples(low_rank)
    subspace = fit_subspace(samples, 5)
    reduced = reduce_samples(samples, subspace, 1)
    assert reduced.shape == (600, 5) and reduced.n_features == 40
    coordinates = np.random.default_rng(1).normal(size=(12, 5))
    full = e_step(samples, subspace.lift(coordinates), 0.5, kernel, 3.0, np.float64)
    small = e_step(reduced, coordinates, 0.5, kernel, 3.0, np.float64)
    np.testing.assert_allclose(small.log_likelihood, full.log_likelihood, rtol=1e-6)
    np.testing.assert_allclose(small.weighted_sq_distance, full.weighted_sq_distance, rtol=1e-5)
    np.testing.assert_allclose(small.mass, full.mass, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(
        small.weighted_sq_distance_to(coordinates),
        full.weighted_sq_distance_to(subspace.lift(coordinates)),
        rtol=1e-5,
    )


@pytest.mark.parametrize("kernel", ["gaussian", "student_t"])
def test_residual_samples_pass_as_samples_whose_residuals_are_directions_of_their_own(kernel):
    # The same samples written out: coordinates, then sample k's residual length on axis k.
    rng = np.random.default_rng(3)
    n_samples, n_components, n_nodes = 50, 4, 6
    coordinates = rng.normal(size=(n_samples, n_components))
    sq_residuals = rng.uniform(0.5, 2.0, n_samples)
    sq_residuals[7] = 0.0  # a sample inside the subspace
    written_out = np.hstack([coordinates, np.diag(np.sqrt(sq_residuals))])
    n_features = n_components + n_samples
    frame = Frame(offset=None, scale=None, exponent=0, centre=np.zeros(n_features), spread=1.0)
    dense = ChunkedSamples(written_out, frame, np.float64, n_nodes).cache_terms()
    residual = ResidualSamples(
        coordinates, sq_residuals, n_features, frame, np.dtype(np.float64), n_nodes, n_threads=2
    )
    code_vectors = 0.3 * rng.normal(size=(n_nodes, n_features))
    expected = e_step(dense, code_vectors, 0.7, kernel, 3.0, np.float64)
    statistics = residual.e_step(code_vectors, 0.7, kernel, 3.0, np.float64)
    np.testing.assert_allclose(statistics.mass, expected.mass, rtol=1e-10)
    np.testing.assert_allclose(statistics.weighted_sums, expected.weighted_sums, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(statistics.weighted_sq_norms, expected.weighted_sq_norms, rtol=1e-10)
    np.testing.assert_allclose(statistics.weighted_sq_distance, expected.weighted_sq_distance, rtol=1e-10)
    np.testing.assert_allclose(statistics.log_likelihood, expected.log_likelihood, rtol=1e-10)
    assert np.all(statistics.weighted_sums[:, n_components + 7] == 0.0)


def test_code_vectors_in_features_are_the_full_m_step_of_the_same_weights(low_rank):
    X = low_rank.astype(np.float64)
    samples = _samples(X)
    subspace = fit_subspace(samples, 3)
    reduced = reduce_samples(samples, subspace, 1)
    rng = np.random.default_rng(4)
    weights = rng.dirichlet(np.ones(12), size=len(X))
    smoothness = smoothness_matrix(4, 3, "rect", "bending")
    full = weighted_statistics(samples, weights)
    expected = solve_exactly(full.mass, full.weighted_sums, np.zeros((12, 40)), smoothness, 5.0)
    # The M-step on the residual samples, whose code vectors hold each sample's residual coefficient.
    in_subspace = weighted_statistics(reduced, weights).weighted_sums
    residual_sums = (weights * reduced.residual_norms[:, None]).T
    code_vectors = solve_exactly(
        full.mass, np.hstack([in_subspace, residual_sums]), np.zeros((12, 3 + len(X))), smoothness, 5.0
    )
    in_features = code_vectors_in_features(samples, subspace, reduced, code_vectors)
    np.testing.assert_allclose(in_features, expected, rtol=1e-8, atol=1e-8)


def test_a_subspace_of_every_dimension_gives_the_full_fit(blobs):
    full = KerDenSOM(3, 2, random_state=0).fit(blobs)
    subspace = KerDenSOM(3, 2, subspace_components=blobs.shape[1], random_state=0).fit(blobs)
    assert full.subspace_components_ is None and subspace.subspace_components_ == blobs.shape[1]
    # More dimensions than the data have: the fit says in how many it ran.
    beyond = KerDenSOM(3, 2, subspace_components=blobs.shape[1] + 5, random_state=0).fit(blobs)
    assert beyond.subspace_components_ == blobs.shape[1]
    assert adjusted_rand_score(full.labels_, subspace.labels_) == 1.0
    np.testing.assert_allclose(subspace.score(blobs), full.score(blobs), rtol=1e-6)
    np.testing.assert_allclose(subspace.sigma_, full.sigma_, rtol=1e-5)


def test_a_subspace_fit_returns_code_vectors_in_pixel_space(low_rank):
    som = KerDenSOM(4, 3, subspace_components=3, random_state=0).fit(low_rank)
    assert som.cluster_centers_.shape == (12, 40) and som.cluster_centers_.dtype == np.float32
    np.testing.assert_array_equal(som.labels_, som.predict(low_rank))
    # The map of the 3 dimensions that hold the signal keeps the full fit's likelihood.
    full = KerDenSOM(4, 3, random_state=0).fit(low_rank)
    assert abs(som.score(low_rank) - full.score(low_rank)) < 0.01 * abs(full.score(low_rank))


@pytest.mark.parametrize("kind", ["memmap", "dask"])
def test_a_subspace_fit_of_a_memory_map_or_dask_array_is_that_of_the_array(low_rank, kind, tmp_path):
    if kind == "memmap":
        X = np.memmap(tmp_path / "x.dat", dtype=low_rank.dtype, mode="w+", shape=low_rank.shape)
        X[:] = low_rank
    else:
        da = pytest.importorskip("dask.array")
        X = da.from_array(low_rank, chunks=(150, -1))
    som = KerDenSOM(4, 3, subspace_components=3, random_state=0).fit(X)
    reference = KerDenSOM(4, 3, subspace_components=3, random_state=0).fit(low_rank)
    np.testing.assert_array_equal(som.labels_, reference.labels_)
    np.testing.assert_allclose(som.cluster_centers_, reference.cluster_centers_, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kind", ["float32", "float64", "dask"])
def test_a_subspace_fit_leaves_the_samples_unchanged(low_rank, kind):
    # The basis's PCA centres its subsample in place: that subsample must never be the user's array.
    X = low_rank.astype(kind) if kind != "dask" else low_rank.copy()
    original = np.array(X)
    if kind == "dask":
        da = pytest.importorskip("dask.array")
        X = da.from_array(X, chunks=(-1, -1))
    KerDenSOM(4, 3, subspace_components=3, random_state=0).fit(X)
    np.testing.assert_array_equal(np.asarray(X), original)


def test_subspace_components_needs_the_likelihood(blobs):
    with pytest.raises(ValueError, match="subspace_components=4 needs objective='likelihood'"):
        KerDenSOM(2, 2, subspace_components=4, objective="xmipp").fit(blobs)


def test_the_fit_does_not_depend_on_the_number_of_threads(low_rank):
    fits = [KerDenSOM(4, 3, n_jobs=n_jobs, random_state=0).fit(low_rank) for n_jobs in (1, 2, 3)]
    for som in fits[1:]:
        np.testing.assert_array_equal(som.cluster_centers_, fits[0].cluster_centers_)
        assert som.n_iter_ == fits[0].n_iter_
    np.testing.assert_array_equal(fits[2].predict_proba(low_rank), fits[0].predict_proba(low_rank))


@pytest.mark.parametrize("n_jobs", [0, 1.5, "2"])
def test_impossible_n_jobs_is_refused(blobs, n_jobs):
    with pytest.raises(ValueError, match="n_jobs"):
        KerDenSOM(2, 2, n_jobs=n_jobs).fit(blobs)


def test_overlapping_blas_limits_restore_the_original_settings():
    import threading

    from threadpoolctl import threadpool_info

    from sklearn_kerdensom._blas import single_threaded_blas

    def blas_threads():
        return [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]

    before = blas_threads()
    first_entered, second_entered, first_left = threading.Event(), threading.Event(), threading.Event()

    def first():
        with single_threaded_blas():
            first_entered.set()
            second_entered.wait(5)
        first_left.set()

    def second():
        first_entered.wait(5)
        with single_threaded_blas():
            second_entered.set()
            first_left.wait(5)
            # The first limit was left while this one holds: BLAS stays on one thread.
            assert set(blas_threads()) == {1}

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert blas_threads() == before


def test_a_pass_holds_a_bounded_number_of_chunk_results():
    import tracemalloc

    rng = np.random.default_rng(0)
    X = rng.normal(size=(16_384, 256))
    samples = samples_of(X, fit_frame(X, False), np.float64, 400, n_threads=2).cache_terms()
    centers = rng.normal(size=(400, 256))
    tracemalloc.start()
    try:
        with sklearn.config_context(working_memory=1):  # chunks of 70 rows
            e_step(samples, centers, 300.0, "gaussian", 3.0, np.float64)
            n_chunks = len(list(samples._slices()))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # Each chunk's statistics hold (400, 256) float64 sums, 0.8 MB: all of them would take 190 MB.
    assert n_chunks > 200
    assert peak < 0.5 * n_chunks * 400 * 256 * 8


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="fork is POSIX only")
def test_threads_work_in_a_process_forked_after_a_fit(low_rank):
    import multiprocessing

    KerDenSOM(3, 2, n_jobs=2, random_state=0).fit(low_rank)  # starts the pool of 2 threads
    context = multiprocessing.get_context("fork")
    with context.Pool(1) as pool:
        result = pool.apply_async(_fit_labels, (low_rank,))
        labels = result.get(timeout=60)
    assert labels.shape == (len(low_rank),)


def _fit_labels(X):
    return KerDenSOM(3, 2, n_jobs=2, random_state=0).fit(X).labels_


@pytest.mark.parametrize("n_steps", [1, 2, 5])
def test_every_annealing_step_runs_on_the_residual_samples(low_rank, monkeypatch, n_steps):
    ran = []

    def recorded_anneal(problem, code_vectors, sigma, schedule, *args, **kwargs):
        ran.append((type(problem.samples), len(schedule), code_vectors.shape))
        return anneal(problem, code_vectors, sigma, schedule, *args, **kwargs)

    monkeypatch.setattr(estimator_module, "anneal", recorded_anneal)
    som = KerDenSOM(4, 3, subspace_components=2, annealing_steps=n_steps, random_state=0).fit(low_rank)
    assert ran == [(ResidualSamples, n_steps, (12, 2))]
    assert som.cluster_centers_.shape == (12, 40)


def test_a_subspace_fit_ends_where_its_last_step_does(low_rank, capsys):
    som = KerDenSOM(4, 3, subspace_components=2, annealing_steps=3, random_state=0, verbose=1).fit(low_rank)
    printed = capsys.readouterr().out
    assert [f"step {step}/3" in printed for step in (1, 2, 3)] == [True, True, True]
    history = som.annealing_history_
    assert len(history) == 3 and som.n_iter_ == sum(step["n_iter"] for step in history)
    assert history[-1]["converged"] and history[-1]["n_iter"] > 1
    assert som.sigma_ == pytest.approx(history[-1]["sigma"], rel=1e-12)
    # The code vectors take back the detail outside the subspace from the residual coefficients.
    centred = som.cluster_centers_.astype(np.float64) - low_rank.mean(axis=0)
    basis = np.linalg.svd(low_rank - low_rank.mean(axis=0), full_matrices=False)[2][:2].T
    assert np.abs(centred - centred @ basis @ basis.T).max() > 1e-3
