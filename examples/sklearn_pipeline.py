"""fastbp inside scikit-learn: a Pipeline, a grid search and a model file.

``fastbp.sklearn.MLPClassifier`` takes scikit-learn's own parameters, so it drops into a
``Pipeline`` and ``GridSearchCV`` unchanged; here on the digits data as a pandas DataFrame
(column names are kept as ``feature_names_in_``). The best network is then saved in
fastbp's model format and loaded back for scoring.

Run:  python examples/sklearn_pipeline.py
"""

from __future__ import annotations

import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import fastbp as fb
from fastbp.sklearn import MLPClassifier


def main() -> None:
    digits = load_digits()
    X = pd.DataFrame(digits.data, columns=[f"px{i}" for i in range(64)])
    X_train, X_test, y_train, y_test = train_test_split(X, digits.target, test_size=0.25, random_state=0)

    # 60 epochs, not scikit-learn's 200: enough here, and it says so with a ConvergenceWarning
    warnings.filterwarnings("ignore", category=ConvergenceWarning)
    pipe = make_pipeline(StandardScaler(), MLPClassifier(max_iter=60, random_state=0))
    grid = GridSearchCV(
        pipe,
        {"mlpclassifier__hidden_layer_sizes": [(64,), (256, 128)], "mlpclassifier__alpha": [1e-4, 1e-2]},
        cv=3,
    )
    start = time.perf_counter()
    grid.fit(X_train, y_train)
    print(f"grid search: 4 settings x 3 folds + refit in {time.perf_counter() - start:.1f} s")
    print(f"best: {grid.best_params_}, cross-validated accuracy {grid.best_score_:.3f}")
    print(f"held-out accuracy {grid.score(X_test, y_test):.3f}")

    # the fitted network is a fastbp.Sequential: save it in fastbp's format (no pickle)
    mlp = grid.best_estimator_[-1]
    scaler = grid.best_estimator_[0]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "digits.fbp"
        mlp.model_.save(path)
        model = fb.load(path)
        proba = model.predict(scaler.transform(X_test).astype(np.float32))
    agree = np.mean(mlp.classes_[proba.argmax(axis=1)] == grid.predict(X_test))
    print(f"reloaded model agrees with the pipeline on {agree:.1%} of the test rows")


if __name__ == "__main__":
    main()
