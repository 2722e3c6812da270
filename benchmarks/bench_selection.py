"""Model selection that means something: what each cross-validation score picks, against the ground truth.

Data: ``make_adk_path`` and ``make_adk_mixed`` (bench_quality.py), 2000 particles of 64x64 at SNR 0.1 (600
with --quick). Candidates: square maps of 4, 7 and 10 nodes a side, ``reg_final`` 20, 200 and 1000 (the rest
default), in a ``MaskVectorizer -> KerDenSOM`` pipeline. Each candidate is scored by 3-fold cross-validation
(the same folds for all) with:

* ``likelihood``: ``KerDenSOM.score``, the held-out mean log-likelihood (the estimator's default score);
* ``quantization``: :func:`sklearn_kerdensom.metrics.quantization_scorer`, minus the held-out quantization
  error (how close held-out images come to a class);
* ``topographic``: :func:`sklearn_kerdensom.metrics.topographic_scorer`, minus the held-out topographic
  error (how often a held-out image's two nearest classes are map neighbours).

Each score's spread is given twice: across folds, and of the paired difference to the best candidate
(both fitted and scored on the same folds), which is what decides whether a choice is noise. Each candidate
is then fitted on all the particles and measured against the ground truth (bench_quality.py's definitions):
``path R2`` and ``spread`` (how finely the classes resolve the path), ``continuity`` and ``topo err`` (how
well the map keeps neighbours together), ``fidelity`` (class averages against clean images). The table
marks each score's choice and ranks it by every ground-truth measure (1 = best of the 9).

    python benchmarks/bench_selection.py [--quick]
"""

import argparse
import itertools
import warnings

import _common
import bench_quality
import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import KFold
from sklearn.pipeline import make_pipeline

from sklearn_kerdensom import KerDenSOM, MaskVectorizer, circular_mask
from sklearn_kerdensom._topology import adjacency_matrix
from sklearn_kerdensom.metrics import quantization_scorer, topographic_error, topographic_scorer

SIDES = (4, 7, 10)
REG_FINALS = (20.0, 200.0, 1000.0)
SCORERS = {
    "likelihood": lambda pipeline, images: pipeline.score(images),
    "quantization": quantization_scorer,
    "topographic": topographic_scorer,
}
# Ground-truth measures and whether larger is better.
TRUTH = {"path R2": True, "spread": False, "continuity": True, "topo err": False, "fidelity": True}


def pipeline(side, reg_final, mask):
    return make_pipeline(MaskVectorizer(mask), KerDenSOM(side, side, reg_final=reg_final, random_state=0))


def ground_truth(data, fitted, side, mask):
    som = fitted[-1]
    labels = som.labels_
    on_path = data.state < 0
    path_labels, coordinate = labels[on_path], data.path_coordinate[on_path]
    n_nodes = side * side
    near = (adjacency_matrix(side, side, "rect") + np.eye(n_nodes)) > 0
    r2, spread = bench_quality.path_variance(path_labels, coordinate, n_nodes)
    return {
        "path R2": r2,
        "spread": spread,
        "continuity": bench_quality.continuity(
            path_labels, coordinate, near, np.bincount(path_labels, minlength=n_nodes)
        ),
        "topo err": topographic_error(som, fitted[0].transform(data.images)),
        "fidelity": bench_quality.fidelity(data.images, data.clean_images, labels, mask, n_nodes),
    }


def evaluate(data, mask):
    candidates = list(itertools.product(SIDES, REG_FINALS))
    folds = list(KFold(3, shuffle=True, random_state=0).split(data.images))
    scores = {name: np.zeros((len(candidates), len(folds))) for name in SCORERS}
    truth = []
    for index, (side, reg_final) in enumerate(candidates):
        for fold, (train, test) in enumerate(folds):
            fitted = pipeline(side, reg_final, mask).fit(data.images[train])
            for name, scorer in SCORERS.items():
                scores[name][index, fold] = scorer(fitted, data.images[test])
        truth.append(ground_truth(data, pipeline(side, reg_final, mask).fit(data.images), side, mask))
    return candidates, scores, truth


def ranks(values, larger_is_better):
    order = np.argsort(-np.asarray(values) if larger_is_better else np.asarray(values), kind="stable")
    result = np.empty(len(values), dtype=int)
    result[order] = np.arange(1, len(values) + 1)
    return result


def report(title, candidates, scores, truth):
    print(f"\n{title}")
    rows = []
    for index, (side, reg_final) in enumerate(candidates):
        row = [f"{side}x{side}, reg_final {reg_final:g}"]
        for name in SCORERS:
            best = int(np.argmax(scores[name].mean(axis=1)))
            paired = scores[name][index] - scores[name][best]
            row.append(
                f"{scores[name][index].mean():.4g} ±{scores[name][index].std():.2g} (Δ ±{paired.std():.2g})"
            )
        row += [truth[index][name] for name in TRUTH]
        rows.append(row)
    _common.table(
        ["candidate", *SCORERS, *TRUTH], rows, {len(SCORERS) + 1 + i: ".3f" for i in range(len(TRUTH))}
    )
    choices = {}
    for name in SCORERS:
        chosen = int(np.argmax(scores[name].mean(axis=1)))
        chosen_ranks = {
            measure: int(ranks([t[measure] for t in truth], larger)[chosen])
            for measure, larger in TRUTH.items()
        }
        choices[name] = {"candidate": candidates[chosen], "ground_truth_ranks": chosen_ranks}
        side, reg_final = candidates[chosen]
        shown = ", ".join(f"{measure} #{rank}" for measure, rank in chosen_ranks.items())
        print(f"  {name} picks {side}x{side}, reg_final {reg_final:g}: {shown}")
    return choices


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="600 particles")
    args = parser.parse_args()
    n_samples = 600 if args.quick else 2000
    info = _common.machine_info()
    _common.print_header(f"bench_selection: 9 candidates, 3-fold CV, {n_samples} particles of 64x64", info)
    mask = circular_mask((64, 64), bench_quality.MASK_RADIUS)
    results = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for set_name in ("path", "mixed"):
            data = bench_quality.make_set(set_name, n_samples, 0.1)
            candidates, scores, truth = evaluate(data, mask)
            choices = report(f"{set_name}, SNR 0.1", candidates, scores, truth)
            results[set_name] = {
                "candidates": candidates,
                "scores": {name: values.tolist() for name, values in scores.items()},
                "ground_truth": truth,
                "choices": choices,
            }
    _common.write_json(
        "bench_selection_quick" if args.quick else "bench_selection",
        {"machine": info, "n_samples": n_samples, "results": results},
    )


if __name__ == "__main__":
    main()
