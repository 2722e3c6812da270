"""Map quality on simulated particles with ground truth: the default fit against the reference rules.

Data (``sklearn_kerdensom.datasets``, 64x64 px of 1.2 Å, CTF phase-flipped, white noise): 2000 particles
(600 with --quick) of each of four sets, at SNR 0.1 and 0.05 (0.1 only with --quick):

* ``views``: closed AdK along a path of views (turned by 0-90 degrees), path coordinate = angle / 90;
* ``states``: three conformations (closed, intermediate, open), path coordinate 0, 0.5, 1;
* ``path``: the closed -> open conformational path, path coordinate in [0, 1];
* ``mixed``: the three states (1000 particles) and the path (1000) together.

Each set is simulated once (``random_state=0``) and fitted with 3 seeds (2 with --quick) by a
``MaskVectorizer(circular_mask((64, 64), 26)) -> KerDenSOM(7, 7, random_state=seed, **rules)``
pipeline, for two sets of rules:

* ``default``: ``KerDenSOM()``'s defaults (the penalised likelihood, PCA start, bending smoothness
  annealed 1e4 -> 200);
* ``membrane``: the defaults with Xmipp's membrane smoothness and its 1000 -> 200 (the default of the
  releases before bending);
* ``reference``: the reference program's rules, ``objective="xmipp", init="random"``.

Measures (mean over seeds; "path particles" are all particles of views and path, the path's in mixed):

* ``layout``: Spearman rank correlation of the path coordinate with the position along the map (the
  least-squares linear function of the particle's node x, y that best predicts the coordinate); path
  particles, and all particles of states.
* ``continuity``: the fraction of consecutive path particles (sorted by path coordinate) whose nodes are
  the same or map neighbours, corrected for chance: ``(observed - chance) / (1 - chance)``, chance being
  that fraction for two particles drawn at random with the fitted class sizes; path particles.
* ``state ARI``: adjusted Rand index of the true states against the map grouped into 3 regions (Ward
  clustering of the code vectors, connected on the map); particles of states and of mixed's states.
* ``topo err``: topographic error (fraction of particles whose two nearest code vectors are not map
  neighbours).
* ``fidelity``: correlation, inside the mask, of each particle's class average with its clean image.
* ``path R2``: fraction of the path coordinate's variance explained by the classes (1 - within-class /
  total sum of squares); path particles.
* ``spread``: within-class standard deviation of the path coordinate; path particles.
* ``empty``: nodes without a particle, of 49.
* ``effective``: exp of the entropy of the class sizes (49 for a map used evenly).
* ``border``, ``corners``: share of particles in the 24 border nodes, and in the 4 corner nodes (0.49 and
  0.08 for an even map).
* ``stability``: mean adjusted Rand index of the labels between pairs of seeds.
* ``iterations``, ``seconds``: inner iterations and wall time of the fit.

Prints one table per data set and SNR and an overall one (mean over sets and SNRs); writes
``results/bench_quality[_quick].json``.

    python benchmarks/bench_quality.py [--quick] [--rules R ...] [--sets S ...] [--samples N]
                                       [--without-reference]

(``--sets``, ``--samples`` and ``--without-reference`` measure a few rules on more particles, whose
reference fits would take hours; their results' file names say so.)
"""

import argparse
import itertools
import time
import warnings

import _common
import numpy as np
from scipy.stats import spearmanr
from sklearn.cluster import AgglomerativeClustering
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import adjusted_rand_score
from sklearn.pipeline import make_pipeline

from sklearn_kerdensom import KerDenSOM, MaskVectorizer, circular_mask
from sklearn_kerdensom._topology import adjacency_matrix
from sklearn_kerdensom.averaging import class_averages
from sklearn_kerdensom.datasets import make_adk_mixed, make_adk_path, make_adk_states, make_adk_views
from sklearn_kerdensom.metrics import topographic_error

MAP = (7, 7)
MASK_RADIUS = 26
RULES = {
    "default": {},
    "membrane": {"smoothness": "membrane"},
    "reference": {"objective": "xmipp", "init": "random"},
}
# Variants measured on request (--rules): fits in a principal subspace, tolerances of the steps before the last,
# plain EM iterations, and a subspace fit with plain EM iterations ("plain EM, subspace 32": its results file is
# named after its first word).
VARIANTS = {
    **{f"subspace {n}": {"subspace_components": n} for n in (8, 16, 32, 64, 128)},
    **{f"annealing_tol {tol:g}": {"annealing_tol": tol} for tol in (1e-7, 1e-6, 1e-5, 1e-4, 1e-3)},
    "acceleration None": {"acceleration": None},
    "plain EM, subspace 32": {"subspace_components": 32, "acceleration": None},
}
MEASURES = (
    "layout",
    "continuity",
    "state ARI",
    "topo err",
    "fidelity",
    "path R2",
    "spread",
    "empty",
    "effective",
    "border",
    "corners",
    "stability",
    "iterations",
    "seconds",
)
# Whether a larger value is better, for the "better than the reference" column.
LARGER_IS_BETTER = {
    "layout": True,
    "continuity": True,
    "state ARI": True,
    "topo err": False,
    "fidelity": True,
    "path R2": True,
    "spread": False,
    "empty": False,
    "effective": True,
    "border": False,
    "corners": False,
    "stability": True,
    "iterations": False,
    "seconds": False,
}


SETS = ("views", "states", "path", "mixed")


def make_set(name, n_samples, snr):
    common = {"snr": snr, "random_state": 0}
    if name == "views":
        return make_adk_views(n_samples, **common)
    if name == "states":
        return make_adk_states(n_samples // 3, **common)
    if name == "path":
        return make_adk_path(n_samples, **common)
    return make_adk_mixed(n_samples // 6, n_samples // 2, **common)


def map_geometry():
    n_columns, n_rows = MAP
    rows, columns = np.divmod(np.arange(n_columns * n_rows), n_columns)
    border = (rows == 0) | (rows == n_rows - 1) | (columns == 0) | (columns == n_columns - 1)
    corners = ((rows == 0) | (rows == n_rows - 1)) & ((columns == 0) | (columns == n_columns - 1))
    near = adjacency_matrix(n_columns, n_rows, "rect") + np.eye(n_columns * n_rows)
    return border, corners, near > 0


def layout(positions, coordinate):
    design = np.column_stack([positions, np.ones(len(positions))])
    coefficients, *_ = np.linalg.lstsq(design, coordinate, rcond=None)
    return float(spearmanr(design @ coefficients, coordinate).statistic)


def continuity(labels, coordinate, near, counts):
    order = np.argsort(coordinate)
    observed = near[labels[order[:-1]], labels[order[1:]]].mean()
    shares = counts / counts.sum()
    chance = float(shares @ near @ shares)
    return float((observed - chance) / (1.0 - chance))


def state_ari(centers, labels, state, n_states=3):
    connectivity = adjacency_matrix(*MAP, "rect")
    regions = AgglomerativeClustering(n_states, linkage="ward", connectivity=connectivity).fit_predict(
        centers
    )
    return adjusted_rand_score(state, regions[labels])


def path_variance(labels, coordinate, n_nodes):
    counts = np.bincount(labels, minlength=n_nodes)
    means = np.bincount(labels, weights=coordinate, minlength=n_nodes) / np.maximum(counts, 1)
    within = float(np.sum((coordinate - means[labels]) ** 2))
    total = float(np.sum((coordinate - coordinate.mean()) ** 2))
    return 1.0 - within / total, float(np.sqrt(within / len(coordinate)))


def fidelity(images, clean, labels, mask, n_nodes):
    averages = class_averages(images, labels, n_nodes)[0][:, mask]
    estimates = averages[labels]
    truth = clean[:, mask].astype(np.float64)
    estimates = estimates - estimates.mean(axis=1, keepdims=True)
    truth = truth - truth.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(estimates, axis=1) * np.linalg.norm(truth, axis=1)
    return float(np.mean(np.sum(estimates * truth, axis=1) / norms))


def measure(data, som, vectors, seconds, mask):
    """Every measure but stability, of one fitted map."""
    labels = som.labels_
    n_nodes = len(som.cluster_centers_)
    counts = np.bincount(labels, minlength=n_nodes)
    border, corners, near = map_geometry()
    on_path = data.state < 0 if np.any(data.state < 0) else np.ones(len(labels), dtype=bool)
    shares = counts[counts > 0] / counts.sum()
    result = {
        "layout": layout(som.node_positions_[labels[on_path]], data.path_coordinate[on_path]),
        "continuity": np.nan,
        "state ARI": np.nan,
        "topo err": topographic_error(som, vectors),
        "fidelity": fidelity(data.images, data.clean_images, labels, mask, n_nodes),
        "path R2": np.nan,
        "spread": np.nan,
        "empty": int(np.sum(counts == 0)),
        "effective": float(np.exp(-np.sum(shares * np.log(shares)))),
        "border": float(counts[border].sum() / counts.sum()),
        "corners": float(counts[corners].sum() / counts.sum()),
        "iterations": som.n_iter_,
        "seconds": seconds,
    }
    if np.any(data.state < 0):
        path_counts = np.bincount(labels[on_path], minlength=n_nodes)
        result["continuity"] = continuity(labels[on_path], data.path_coordinate[on_path], near, path_counts)
        result["path R2"], result["spread"] = path_variance(
            labels[on_path], data.path_coordinate[on_path], n_nodes
        )
    if np.any(data.state >= 0):
        discrete = data.state >= 0
        result["state ARI"] = state_ari(som.cluster_centers_, labels[discrete], data.state[discrete])
    return result


def fit(data, rules, seed, mask):
    pipeline = make_pipeline(MaskVectorizer(mask), KerDenSOM(*MAP, random_state=seed, **rules))
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        pipeline.fit(data.images)
    seconds = time.perf_counter() - start
    return pipeline, seconds


def evaluate(data, rules, seeds, mask):
    """Mean of every measure over the seeds, and the stability of the labels between them."""
    per_seed, labels = [], []
    for seed in seeds:
        pipeline, seconds = fit(data, rules, seed, mask)
        som = pipeline[-1]
        per_seed.append(measure(data, som, pipeline[0].transform(data.images), seconds, mask))
        labels.append(som.labels_)
    result = {name: float(np.mean([run[name] for run in per_seed])) for name in per_seed[0]}
    result["stability"] = float(
        np.mean([adjusted_rand_score(a, b) for a, b in itertools.combinations(labels, 2)])
    )
    result["per_seed"] = per_seed
    return result


def at_least_as_good(name, value, reference):
    if np.isnan(value) or np.isnan(reference):
        return ""
    better = value >= reference if LARGER_IS_BETTER[name] else value <= reference
    return "yes" if better else "no"


def print_table(title, results):
    print(f"\n{title}")
    challengers = [rules for rules in results if rules != "reference"] if "reference" in results else []
    rows = [
        [
            name,
            *(results[rules][name] for rules in results),
            *(
                at_least_as_good(name, results[rules][name], results["reference"][name])
                for rules in challengers
            ),
        ]
        for name in MEASURES
    ]
    headers = ["measure", *results, *(f"{rules} >= reference" for rules in challengers)]
    _common.table(headers, rows, {index: ".3f" for index in range(1, len(results) + 1)})


def variant_family(names):
    """The results' file suffix of a set of rules: their common first word ("subspace", "annealing_tol")."""
    families = sorted({name.split()[0] for name in names})
    return "_".join(families) if len(families) <= 2 else "variants"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="600 particles, SNR 0.1, 2 seeds")
    parser.add_argument(
        "--rules",
        nargs="+",
        choices=[*RULES, *VARIANTS],
        default=list(RULES),
        help="the rules to measure (default: %(default)s); the reference rules are measured too",
    )
    parser.add_argument("--sets", nargs="+", choices=SETS, default=list(SETS), help="the data sets")
    parser.add_argument("--samples", type=int, default=None, help="particles per set (default: 2000)")
    parser.add_argument(
        "--without-reference",
        action="store_true",
        help="leave out the reference rules (their fits take the longest: for larger --samples)",
    )
    args = parser.parse_args()
    names = [*args.rules, *([] if args.without_reference else ["reference"])]
    rules = {name: {**RULES, **VARIANTS}[name] for name in dict.fromkeys(names)}
    n_samples = args.samples or (600 if args.quick else 2000)
    snrs = (0.1,) if args.quick else (0.1, 0.05)
    seeds = range(2 if args.quick else 3)

    info = _common.machine_info()
    _common.print_header(
        f"bench_quality: {len(args.sets)} sets x {n_samples} particles of 64x64, 7x7 maps", info
    )
    mask = circular_mask((64, 64), MASK_RADIUS)
    results = {}
    for set_name, snr in itertools.product(args.sets, snrs):
        data = make_set(set_name, n_samples, snr)
        key = f"{set_name}, SNR {snr}"
        results[key] = {name: evaluate(data, rules[name], seeds, mask) for name in rules}
        print_table(key, results[key])
    overall = {
        rule: {name: float(np.nanmean([results[key][rule][name] for key in results])) for name in MEASURES}
        for rule in rules
    }
    print_table("overall (mean over sets and SNRs)", overall)
    _common.write_json(
        "bench_quality"
        + ("_quick" if args.quick else "")
        + ("" if rules.keys() == RULES.keys() else "_" + variant_family(args.rules))
        + ("" if list(args.sets) == list(SETS) else "_" + "_".join(args.sets))
        + ("" if args.samples is None else f"_n{n_samples}")
        + ("_without_reference" if args.without_reference else ""),
        {
            "machine": info,
            "n_samples": n_samples,
            "snrs": snrs,
            "seeds": list(seeds),
            "results": results,
            "overall": overall,
        },
    )


if __name__ == "__main__":
    main()
