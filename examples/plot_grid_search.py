"""
Choosing the map size and regularization with GridSearchCV
==========================================================

``KerDenSOM.score`` is the mean log-likelihood of held-out images under the
fitted kernel density, so scikit-learn's :class:`~sklearn.model_selection.GridSearchCV`
can compare map sizes and regularizations by cross-validation, through the
pipeline's parameter names (``kerdensom__n_columns``, ...).

Set ``KERDENSOM_EXAMPLES_SMALL=1`` for a quick run.
"""

import os

import pandas as pd
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline

from sklearn_kerdensom import KerDenSOM, MaskVectorizer, circular_mask
from sklearn_kerdensom.datasets import make_adk_states

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
search = GridSearchCV(pipeline, grid, cv=3, n_jobs=2).fit(data.images)

# %%
# Held-out mean log-likelihood of every combination (higher is better).
results = pd.DataFrame(search.cv_results_)
columns = [f"param_{name}" for name in grid] + ["mean_test_score", "std_test_score"]
print(results[columns].sort_values("mean_test_score", ascending=False).to_string(index=False))
print("best:", search.best_params_)
