"""Memory maps and Dask: the same fit wherever the samples live."""

import warnings

import mrcfile
import numpy as np
import pytest
from sklearn.pipeline import make_pipeline

from sklearn_kerdensom import ClassAverager, KerDenSOM, MaskVectorizer, circular_mask
from sklearn_kerdensom._chunks import MIN_CHUNK_ROWS
from sklearn_kerdensom.io import dask_stack, read_stack

da = pytest.importorskip("dask.array")


@pytest.fixture(scope="module")
def data():
    """Four well-separated groups in 40 dimensions: distinct code vectors, so no label ties."""
    rng = np.random.default_rng(0)
    centres = rng.normal(scale=4.0, size=(4, 40))
    return np.concatenate([c + rng.normal(size=(150, 40)) for c in centres])


def memmap_of(array, tmp_path):
    path = tmp_path / "samples.dat"
    writer = np.memmap(path, dtype=array.dtype, mode="w+", shape=array.shape)
    writer[:] = array
    writer.flush()
    del writer
    return np.memmap(path, dtype=array.dtype, mode="r", shape=array.shape)


PARAMETERS = [
    {"reg_initial": 10, "reg_final": 1},
    {"reg_initial": 10, "reg_final": 1, "objective": "xmipp", "init": "random"},
    {"reg_initial": 10, "reg_final": 1, "kernel": "student_t", "standardize": True, "topology": "hex"},
]


def fit(X, **params):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return KerDenSOM(3, 2, random_state=0, **params).fit(X)


def assert_same_fit(reference, other, X_reference, X_other):
    np.testing.assert_allclose(other.cluster_centers_, reference.cluster_centers_, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(other.labels_, reference.labels_)
    assert [s["n_iter"] for s in other.annealing_history_] == [
        s["n_iter"] for s in reference.annealing_history_
    ]
    np.testing.assert_array_equal(np.asarray(other.predict(X_other)), reference.predict(X_reference))
    np.testing.assert_allclose(
        np.asarray(other.predict_proba(X_other)), reference.predict_proba(X_reference), atol=1e-6
    )
    np.testing.assert_allclose(
        np.asarray(other.transform(X_other)), reference.transform(X_reference), rtol=1e-5
    )
    assert other.score(X_other) == pytest.approx(reference.score(X_reference), rel=1e-7)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("params", PARAMETERS)
def test_memory_map_gives_the_in_memory_fit(data, tmp_path, params, dtype):
    X = data.astype(dtype)
    mapped = memmap_of(X, tmp_path)
    assert_same_fit(fit(X, **params), fit(mapped, **params), X, mapped)


@pytest.mark.parametrize("rows_per_block", [130, 9])  # 5 blocks; 67, summed in a tree of three levels
@pytest.mark.parametrize("params", PARAMETERS)
def test_dask_gives_the_in_memory_fit(data, params, rows_per_block):
    lazy = da.from_array(data, chunks=(rows_per_block, -1))
    dask_fit = fit(lazy, **params)
    assert_same_fit(fit(data, **params), dask_fit, data, lazy)
    assert isinstance(dask_fit.predict(lazy), da.Array)


def test_float32_dask_fit(data):
    # Blocks of the in-memory passes' chunks: float32 products round differently over other rows, which
    # moves the width's relative changes by ~1e-7, across tol (1e-7) here (the README says so), and a step
    # may then stop one iteration apart; over the same rows the two fits must be the same.
    X = data.astype(np.float32)
    lazy = da.from_array(X, chunks=(MIN_CHUNK_ROWS, -1))
    assert_same_fit(fit(X, **PARAMETERS[0]), fit(lazy, **PARAMETERS[0]), X, X)


def test_initial_memberships_with_dask(data):
    memberships = np.random.default_rng(3).dirichlet(np.ones(6), size=len(data))
    params = {"objective": "xmipp", "init": memberships, "reg_initial": 10, "reg_final": 1}
    assert_same_fit(fit(data, **params), fit(da.from_array(data, chunks=(200, -1)), **params), data, data)


def test_dask_chunked_along_features_is_an_error(data):
    with pytest.raises(ValueError, match="chunked along features"):
        KerDenSOM(2, 2).fit(da.from_array(data, chunks=(100, 20)))
    som = fit(data)
    with pytest.raises(ValueError, match="chunked along features"):
        som.predict(da.from_array(data, chunks=(100, 20)))


@pytest.mark.parametrize("row, value", [(5, np.nan), (599, np.inf)])
def test_dask_with_nan_is_an_error(data, row, value):
    bad = data.copy()
    bad[row, 3] = value
    with pytest.raises(ValueError, match="NaN or infinity"):
        KerDenSOM(2, 2).fit(da.from_array(bad, chunks=(100, -1)))
    with pytest.raises(ValueError, match="NaN or infinity"):
        KerDenSOM(2, 2, standardize=True).fit(da.from_array(bad, chunks=(7, -1)))
    with pytest.raises(ValueError, match="NaN or infinity"):
        fit(data).predict(da.from_array(bad, chunks=(100, -1))).compute()


def test_dask_complex_or_unknown_chunks_are_errors(data, images):
    """Complex Dask input lost its imaginary part (NumPy's is refused); unknown chunk sizes gave
    "arange: cannot compute length" (found by a trial)."""
    complex_samples = da.from_array(data + 1j * data, chunks=(100, -1))
    with pytest.raises(ValueError, match="holds complex128 values; expected real numbers"):
        KerDenSOM(2, 2).fit(complex_samples)
    complex_images = da.from_array(images.astype(np.complex64), chunks=(50, -1, -1))
    with pytest.raises(ValueError, match="expected real numbers"):
        MaskVectorizer(circular_mask((32, 32), 12)).fit(complex_images)
    with pytest.raises(ValueError, match="expected real numbers"):
        averager().fit(complex_images)
    samples = da.from_array(data, chunks=(100, -1))
    with pytest.raises(ValueError, match=r"unknown chunk sizes .*compute_chunk_sizes\(\)"):
        KerDenSOM(2, 2).fit(samples[samples[:, 0] > -1e9])


def test_a_dask_stack_rewritten_shorter_is_an_error(images, tmp_path):
    """A stack rewritten with fewer images after dask_stack gave a fit on the images left, silently."""
    path = tmp_path / "stack.mrcs"
    with mrcfile.new(path) as mrc:
        mrc.set_data(images)
    lazy = dask_stack(path, images_per_chunk=50)
    vectors = MaskVectorizer(circular_mask((32, 32), 12)).fit_transform(images)
    import dask

    # Blocks of 50 declared rows, the second of which returns 45.
    blocks = [vectors[start : start + (45 if start == 50 else 50)] for start in range(0, 150, 50)]
    lazy_vectors = da.concatenate(
        [da.from_delayed(dask.delayed(block), (50, vectors.shape[1]), vectors.dtype) for block in blocks]
    )
    with pytest.raises(ValueError, match="holds 45 rows where its chunks say 50"):
        KerDenSOM(2, 2).fit(lazy_vectors)
    with mrcfile.new(path, overwrite=True) as mrc:
        mrc.set_data(images[:170])
    with pytest.raises(ValueError, match="rows where its chunks say"):
        averager().fit(lazy)


def test_dask_with_another_number_of_features(data):
    som = fit(da.from_array(data, chunks=(100, -1)))
    with pytest.raises(ValueError, match="X has 39 features, but KerDenSOM is expecting 40"):
        som.predict(da.from_array(data[:, :39], chunks=(100, -1)))
    with pytest.raises(ValueError, match="X has 39 features"):
        som.predict(data[:, :39])


@pytest.fixture(scope="module")
def images():
    from sklearn_kerdensom.datasets import make_adk_states

    return make_adk_states(60, snr=0.2, binning=2, random_state=0).images


def averager():
    return ClassAverager(
        make_pipeline(
            MaskVectorizer(circular_mask((32, 32), 12)),
            KerDenSOM(3, 3, reg_initial=10, reg_final=1, random_state=0),
        )
    )


def assert_same_classes(reference, other):
    np.testing.assert_array_equal(other.labels_, reference.labels_)
    np.testing.assert_array_equal(other.counts_, reference.counts_)
    # float32 images: absolute agreement is relative to the images' scale (float32 rounding of the
    # weighted sums is ~1e-7 of it), as for the Xmipp fixtures' code vectors.
    for name in ("averages_", "representatives_"):
        expected = getattr(reference, name)
        atol = 1e-6 * np.abs(expected).max()
        np.testing.assert_allclose(getattr(other, name), expected, rtol=1e-5, atol=atol, err_msg=name)


def test_pipeline_on_memory_mapped_stack(images, tmp_path):
    path = tmp_path / "stack.mrcs"
    with mrcfile.new(path) as mrc:
        mrc.set_data(images)
    stack = read_stack(path)
    assert isinstance(stack, np.memmap)
    vectorizer = MaskVectorizer(circular_mask((32, 32), 12)).fit(stack)
    vectors = vectorizer.transform(stack)
    assert isinstance(vectors, np.memmap)  # written chunk by chunk to a temporary file
    np.testing.assert_array_equal(vectors, vectorizer.transform(images))
    assert_same_classes(averager().fit(images), averager().fit(stack))


def test_pipeline_on_dask_stack(images, tmp_path):
    path = tmp_path / "stack.mrcs"
    with mrcfile.new(path) as mrc:
        mrc.set_data(images)
    lazy = dask_stack(path, images_per_chunk=50)
    assert lazy.chunks[0] == (50, 50, 50, 30)
    np.testing.assert_array_equal(lazy.compute(), images)
    fitted = averager().fit(lazy)
    assert_same_classes(averager().fit(images), fitted)
    np.testing.assert_array_equal(np.asarray(fitted.predict(lazy)), fitted.labels_)


def test_on_a_local_cluster(data, images):
    """Fit, predict and score on 2 worker processes; only node-sized statistics travel back."""
    distributed = pytest.importorskip("distributed")
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster),
    ):
        lazy = da.from_array(data, chunks=(150, -1)).persist()
        params = PARAMETERS[0]
        assert_same_fit(fit(data, **params), fit(lazy, **params), data, lazy)
        lazy_images = da.from_array(images, chunks=(45, 32, 32)).persist()
        assert_same_classes(averager().fit(images), averager().fit(lazy_images))


def test_a_memory_map_that_is_copied_into_memory_says_so(images, tmp_path):
    """int16 and float16 stacks are converted to float64 in memory before a fit: a warning says so
    (the README said memory maps are read chunk by chunk; found by a trial)."""
    path = tmp_path / "stack.mrcs"
    with mrcfile.new(path) as mrc:
        mrc.set_data((images * 100).astype(np.int16))
    stack = read_stack(path)
    with pytest.warns(UserWarning, match="memory map of int16: it is converted to a float64 array in memory"):
        fitted = averager().fit(stack)
    assert fitted.labels_.shape == (len(images),)
    vectors = memmap_of(np.asarray(stack, dtype=np.float16).reshape(len(images), -1), tmp_path)
    with pytest.warns(UserWarning, match="memory map of float16"):
        KerDenSOM(2, 2, max_iter=5, random_state=0).fit(vectors)
    with warnings.catch_warnings():
        # float32 memory maps are read chunk by chunk: no such warning.
        warnings.filterwarnings("error", message=".*memory map of")
        KerDenSOM(2, 2, max_iter=5, random_state=0).fit(memmap_of(vectors.astype(np.float32), tmp_path))
