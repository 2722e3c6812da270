"""
Choosing the map size and regularization with GridSearchCV
==========================================================

``KerDenSOM.score`` is the mean log-likelihood of held-out images under the
fitted kernel density, so scikit-learn's :class:`~sklearn.model_selection.GridSearchCV`
can compare map sizes and regularizations by cross-validation, through the
pipeline's parameter names (``kerdensom__n_columns``, ...). Two more scorers
say other things about a map: ``quantization_scorer`` (how close held-out
images come to a class: it favours large maps that resolve the variability
finely) and ``topographic_scorer`` (how often a held-out image's two nearest
classes are neighbours: it favours small, smooth maps). On simulated data with
ground truth (``benchmarks/bench_selection.py``) the likelihood picks the most
faithful class averages, the quantization score the finest resolution of a
path, the topographic score the best-kept neighbourhoods.

Set ``KERDENSOM_EXAMPLES_SMALL=1`` for a quick run.
"""

import os

import pandas as pd
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline

from sklearn_kerdensom import KerDenSOM, MaskVectorizer, circular_mask
from sklearn_kerdensom.datasets import make_adk_states
from sklearn_kerdensom.metrics import quantization_scorer, topographic_scorer

small = os.environ.get("KERDENSOM_EXAMPLES_SMALL") == "1"
data = make_adk_states(40 if small else 150, snr=0.1, binning=2, random_state=0)
size = data.images.shape[1]

pipeline = make_pipeline(
    MaskVectorizer(circular_mask((size, size), 0.4 * size)),
    KerDenSOM(max_iter=50 if small else 200, random_state=0),
)
grid = {
    "kerdensom__n_columns": [2, 4] if small else [3, 5, 7],
    "kerdensom__n_rows": [2] if small else [3, 5],
    "kerdensom__reg_final": [20.0, 200.0],
}
scoring = {
    "likelihood": lambda estimator, images, y=None: estimator.score(images),
    "quantization": quantization_scorer,
    "topographic": topographic_scorer,
}
search = GridSearchCV(pipeline, grid, scoring=scoring, refit="likelihood", cv=3, n_jobs=2).fit(data.images)

# %%
# Held-out scores of every combination (higher is better), and what each would choose. The folds are
# the same for every candidate, so compare candidates fold by fold: the spread across folds (std) is
# mostly shared by all of them.
results = pd.DataFrame(search.cv_results_)
columns = [f"param_{name}" for name in grid] + [f"mean_test_{name}" for name in scoring]
print(results[columns].sort_values("mean_test_likelihood", ascending=False).to_string(index=False))
for name in scoring:
    print(f"best by {name}:", results.loc[results[f"rank_test_{name}"].idxmin(), "params"])
