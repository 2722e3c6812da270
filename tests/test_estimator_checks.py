"""scikit-learn's own estimator checks."""

from sklearn.utils.estimator_checks import parametrize_with_checks

from sklearn_kerdensom import KerDenSOM


def expected_failures(estimator):
    """check_clustering wants contiguous labels; a map with more nodes than the
    check's 3 blobs leaves some nodes empty, so its labels have gaps. Xmipp's
    rules and subspace fits run on NumPy arrays only: on other namespaces they
    refuse to fit, with a message that says so (tests/test_array_api.py)."""
    failures = {}
    if estimator.n_nodes > 4:
        failures["check_clustering"] = "empty map nodes give non-contiguous labels"
    if estimator.objective == "xmipp" or estimator.subspace_components is not None:
        for check in (
            "check_array_api_input",
            "check_array_api_same_namespace",
            "check_array_api_mixed_inputs",
        ):
            failures[check] = "runs on NumPy arrays only"
    return failures


@parametrize_with_checks(
    [
        KerDenSOM(),
        KerDenSOM(4, 3, objective="xmipp", init="random", max_iter=50),
        KerDenSOM(3, 3, topology="hex", kernel="student_t", df=5.0, standardize=True),
        KerDenSOM(2, 2, reg_initial=0, reg_final=0),
        KerDenSOM(3, 2, subspace_components=3, n_jobs=2),
    ],
    expected_failed_checks=expected_failures,
)
def test_sklearn_compatible(estimator, check):
    check(estimator)
