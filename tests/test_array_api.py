"""Arrays of other Array API namespaces, under scikit-learn's ``array_api_dispatch``.

``array_api_strict`` (the standard's reference namespace, on the CPU) runs everywhere; PyTorch on the CPU
where it is installed; PyTorch and CuPy on a GPU only where one is (``gpu`` marker, skipped otherwise).
Every public method must give the NumPy results (rtol 1e-5, identical labels), with inputs, fitted
attributes and results in the input's namespace and on its device.
"""

import importlib.util

import array_api_compat
import numpy as np
import pytest
import sklearn
from sklearn.pipeline import make_pipeline

from sklearn_kerdensom import ClassAverager, KerDenSOM, MaskVectorizer, circular_mask
from sklearn_kerdensom._array_api import chunk_budget, to_numpy
from sklearn_kerdensom._chunks import device_sample_chunks
from sklearn_kerdensom.averaging import class_averages


def _torch_cuda():
    if importlib.util.find_spec("torch") is None:
        return False
    import torch

    return torch.cuda.is_available()


def _cupy_gpu():
    if importlib.util.find_spec("cupy") is None:
        return False
    import cupy

    try:
        return cupy.cuda.runtime.getDeviceCount() > 0
    except cupy.cuda.runtime.CUDARuntimeError:
        return False


NO_GPU = "needs a GPU (PyTorch with CUDA or CuPy); none here"
NAMESPACES = [
    pytest.param(("array_api_strict", None), id="array_api_strict"),
    # A device other than the CPU's: NumPy cannot read its arrays, as it cannot a GPU's.
    pytest.param(("array_api_strict", "device1"), id="array_api_strict-device1"),
    pytest.param(
        ("torch", "cpu"),
        id="torch-cpu",
        marks=pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="PyTorch not installed"),
    ),
    pytest.param(
        ("torch", "cuda"),
        id="torch-cuda",
        marks=[pytest.mark.gpu, pytest.mark.skipif(not _torch_cuda(), reason=NO_GPU)],
    ),
    pytest.param(
        ("cupy", None), id="cupy", marks=[pytest.mark.gpu, pytest.mark.skipif(not _cupy_gpu(), reason=NO_GPU)]
    ),
]


@pytest.fixture(params=NAMESPACES)
def to_namespace(request):
    """A function that puts a NumPy array into the namespace (and on the device) under test."""
    name, device = request.param
    xp = pytest.importorskip(name)

    def convert(array):
        if name == "torch":
            return xp.asarray(array, device=device)
        if name == "array_api_strict" and device is not None:
            return xp.asarray(array, device=xp.Device(device))
        return xp.asarray(array)

    # array_api_strict wraps NumPy: its products are NumPy's, rounding for rounding.
    convert.products_of_numpy = name == "array_api_strict"
    with sklearn.config_context(array_api_dispatch=True):
        yield convert


def _assert_in_namespace_of(result, reference):
    assert array_api_compat.array_namespace(result) is array_api_compat.array_namespace(reference)
    assert array_api_compat.device(result) == array_api_compat.device(reference)


@pytest.fixture
def mixture():
    """Three groups in 24 dimensions, with an offset (the data are fitted centred)."""
    rng = np.random.default_rng(0)
    centres = rng.normal(scale=3.0, size=(3, 24))
    return 50.0 + np.concatenate([centre + rng.normal(size=(120, 24)) for centre in centres])


@pytest.mark.parametrize(
    "dtype, options",
    [
        (np.float64, {}),
        (np.float32, {}),
        (np.float64, {"kernel": "student_t", "init": "random"}),
        (np.float32, {"standardize": True}),
    ],
)
def test_every_method_gives_the_numpy_results(to_namespace, mixture, dtype, options):
    X = mixture.astype(dtype)
    settings = {"n_columns": 3, "n_rows": 2, "random_state": 0, **options}
    expected = KerDenSOM(**settings).fit(X)
    X_device = to_namespace(X)
    fitted = KerDenSOM(**settings).fit(X_device)

    # Other matrix products (PyTorch's, a GPU's) round float32 distances differently. A step stops on the
    # first two width changes <= 1e-7 in a row while its state still drifts slowly
    # (benchmarks/bench_convergence.py), so float32 rounding can move the stop: the same map in another
    # number of iterations (measured on PyTorch's CPU: 57 against 73, the width within 8e-8, the same
    # labels). Memberships, exponentials of distances over twice the kernel variance, turn that rounding
    # into up to ~1e-4 of themselves (4e-5 absolute there); distances keep 1e-5.
    same_rounding = to_namespace.products_of_numpy or dtype == np.float64
    if same_rounding:
        assert fitted.n_iter_ == expected.n_iter_
    np.testing.assert_allclose(fitted.sigma_, expected.sigma_, rtol=1e-5)
    for name in ("cluster_centers_", "labels_", "node_positions_"):
        _assert_in_namespace_of(getattr(fitted, name), X_device)
    np.testing.assert_allclose(to_numpy(fitted.cluster_centers_), expected.cluster_centers_, rtol=1e-5)
    np.testing.assert_array_equal(to_numpy(fitted.labels_), expected.labels_)
    np.testing.assert_array_equal(to_numpy(fitted.node_positions_), expected.node_positions_)
    assert to_numpy(fitted.cluster_centers_).dtype == dtype

    np.testing.assert_array_equal(to_numpy(fitted.predict(X_device)), expected.predict(X))
    for method in ("predict_proba", "transform", "score_samples"):
        result = getattr(fitted, method)(X_device)
        _assert_in_namespace_of(result, X_device)
        reference = getattr(expected, method)(X)
        assert to_numpy(result).dtype == reference.dtype
        # Memberships far below 1 are sums of exponentials whose relative rounding says nothing.
        tolerance = {"rtol": 1e-5, "atol": 1e-12}
        if method == "predict_proba" and not same_rounding:
            tolerance = {"rtol": 0.0, "atol": 2e-4}
        np.testing.assert_allclose(to_numpy(result), reference, **tolerance, err_msg=method)
    np.testing.assert_allclose(fitted.score(X_device), expected.score(X), rtol=1e-5)


def test_a_pipeline_with_class_averages(to_namespace):
    rng = np.random.default_rng(1)
    images = rng.normal(size=(200, 16, 16)).astype(np.float32)
    images[:100, 4:12, 4:12] += 2.0
    # A soft mask: the vectorizer weights the pixels on the device too.
    mask = 0.5 + 0.5 * circular_mask((16, 16), 6)

    def averager():
        return ClassAverager(make_pipeline(MaskVectorizer(mask), KerDenSOM(3, 2, random_state=0)))

    expected = averager().fit(images)
    images_device = to_namespace(images)
    fitted = averager().fit(images_device)

    for name in ("labels_", "averages_", "counts_", "representatives_"):
        _assert_in_namespace_of(getattr(fitted, name), images_device)
    np.testing.assert_array_equal(to_numpy(fitted.labels_), expected.labels_)
    np.testing.assert_array_equal(to_numpy(fitted.counts_), expected.counts_)
    np.testing.assert_allclose(to_numpy(fitted.averages_), expected.averages_, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        to_numpy(fitted.representatives_), expected.representatives_, rtol=1e-5, atol=1e-6
    )
    np.testing.assert_array_equal(to_numpy(fitted.predict(images_device)), expected.predict(images))

    vectorizer = fitted.estimator_[0]
    vectors = vectorizer.transform(images_device)
    _assert_in_namespace_of(vectors, images_device)
    np.testing.assert_array_equal(to_numpy(vectors), expected.estimator_[0].transform(images))
    restored = vectorizer.inverse_transform(vectors)
    _assert_in_namespace_of(restored, images_device)
    np.testing.assert_allclose(
        to_numpy(restored), expected.estimator_[0].inverse_transform(expected.estimator_[0].transform(images))
    )

    averages, _ = class_averages(images_device, fitted.labels_, 6)
    _assert_in_namespace_of(averages, images_device)
    np.testing.assert_allclose(to_numpy(averages), expected.averages_, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"objective": "xmipp"}, "objective='xmipp' runs on NumPy arrays only"),
        ({"subspace_components": 4}, "subspace_components runs on NumPy and Dask arrays only"),
    ],
)
def test_options_that_need_numpy_say_so(to_namespace, mixture, options, message):
    with pytest.raises(ValueError, match=message):
        KerDenSOM(3, 2, **options).fit(to_namespace(mixture))


def test_nan_is_refused(to_namespace, mixture):
    X = mixture.copy()
    X[3, 5] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        KerDenSOM(3, 2).fit(to_namespace(X))


def test_the_input_is_not_modified(to_namespace, mixture):
    X_device = to_namespace(mixture)
    KerDenSOM(3, 2, standardize=True, random_state=0).fit(X_device)
    np.testing.assert_array_equal(to_numpy(X_device), mixture)


def test_host_memory_namespaces_keep_the_host_chunks():
    import array_api_strict

    assert chunk_budget(array_api_strict, array_api_strict.Device("CPU_DEVICE")) is None


def test_device_chunks_fill_the_budget():
    # 8 * (4 * 49 + 4096) bytes a row: a 1 GiB budget holds 31 250 rows of 64 x 64 images.
    row_bytes = 8 * (4 * 49 + 4096)
    chunks = list(device_sample_chunks(100_000, 4096, 49, 2**30))
    assert chunks[0] == slice(0, 2**30 // row_bytes)
    assert chunks[-1].stop == 100_000
    assert list(device_sample_chunks(10, 4096, 49, 2**30)) == [slice(0, 10)]
    assert list(device_sample_chunks(3, 4096, 49, 1)) == [slice(0, 1), slice(1, 2), slice(2, 3)]


def test_device_chunks_give_the_numpy_fit(monkeypatch, mixture):
    """The GPU's chunking (a byte budget, here 50 rows at a time), exercised on array_api_strict."""
    import array_api_strict

    from sklearn_kerdensom import _samples

    rows_budget = 50 * 8 * (4 * 6 + mixture.shape[1])
    monkeypatch.setattr(_samples, "chunk_budget", lambda xp, device: rows_budget)
    expected = KerDenSOM(3, 2, random_state=0).fit(mixture)
    with sklearn.config_context(array_api_dispatch=True):
        X_device = array_api_strict.asarray(mixture)
        samples = _samples.samples_of(X_device, None, np.float64, 6)
        assert len(list(samples._slices())) == -(-mixture.shape[0] // 50)
        fitted = KerDenSOM(3, 2, random_state=0).fit(X_device)
        probabilities = to_numpy(fitted.predict_proba(X_device))
    assert fitted.n_iter_ == expected.n_iter_
    np.testing.assert_allclose(to_numpy(fitted.cluster_centers_), expected.cluster_centers_, rtol=1e-5)
    np.testing.assert_array_equal(to_numpy(fitted.labels_), expected.labels_)
    np.testing.assert_allclose(probabilities, expected.predict_proba(mixture), rtol=1e-5, atol=1e-12)


def test_initial_memberships_of_the_namespace(to_namespace, mixture):
    memberships = np.random.default_rng(2).dirichlet(np.ones(6), size=len(mixture))
    expected = KerDenSOM(3, 2, init=memberships).fit(mixture)
    fitted = KerDenSOM(3, 2, init=to_namespace(memberships)).fit(to_namespace(mixture))
    np.testing.assert_allclose(to_numpy(fitted.cluster_centers_), expected.cluster_centers_, rtol=1e-5)


def test_metrics_reports_and_plots_of_a_device_fit(to_namespace, tmp_path):
    """Host code (metrics, plots, the report, the output files) takes a map fitted on a device."""
    pytest.importorskip("matplotlib")
    from sklearn_kerdensom.io import write_class_averager
    from sklearn_kerdensom.metrics import quantization_error, topographic_error
    from sklearn_kerdensom.plotting import plot_class_map, plot_u_matrix
    from sklearn_kerdensom.report import write_report

    rng = np.random.default_rng(1)
    images = rng.normal(size=(120, 12, 12)).astype(np.float32)
    images[:60, 3:9, 3:9] += 2.0
    pipeline = make_pipeline(MaskVectorizer(circular_mask((12, 12), 5)), KerDenSOM(3, 2, random_state=0))
    expected = ClassAverager(pipeline).fit(images)
    images_device = to_namespace(images)
    fitted = ClassAverager(pipeline).fit(images_device)

    vectors = fitted.estimator_[0].transform(images_device)
    som = fitted.estimator_[-1]
    reference_vectors = expected.estimator_[0].transform(images)
    assert quantization_error(som, vectors) == pytest.approx(
        quantization_error(expected.estimator_[-1], reference_vectors), rel=1e-5
    )
    assert topographic_error(som, vectors) == topographic_error(expected.estimator_[-1], reference_vectors)
    plot_class_map(fitted)
    plot_u_matrix(fitted)
    report = write_report(fitted, images_device, tmp_path / "report.html")
    assert report.stat().st_size > 0
    paths = write_class_averager(fitted, tmp_path / "out")
    assert paths
    import matplotlib.pyplot as plt

    plt.close("all")
