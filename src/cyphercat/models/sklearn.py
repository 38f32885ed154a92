"""scikit-learn targets: factories that return an unfitted estimator.

``build_model`` sets ``random_state`` from the model's seed. Estimators see flat features
(``features(x)``, i.e. ``x.reshape(len(x), -1)``), are trained with ``fit`` and queried through
``predict_proba``. They are not cached (that would need pickle), retraining them is cheap.
scikit-learn is imported inside the factories so that looking up a torch model does not pay for it.
"""

from __future__ import annotations

import numpy as np

from cyphercat.models.zoo import model

SK_MODALITIES = ("tabular", "image", "audio")


def features(x: np.ndarray) -> np.ndarray:
    """What every scikit-learn target is fed: one flat row per record."""
    x = np.asarray(x)
    return x.reshape(len(x), -1)


def predict_proba(estimator, x: np.ndarray, num_classes: int) -> np.ndarray:
    """``predict_proba`` with one column per class of the dataset: a model trained on a subset that
    lacked some class gives that class probability 0 instead of silently dropping a column."""
    probs = np.asarray(estimator.predict_proba(features(x)), dtype=np.float64)
    out = np.zeros((len(probs), int(num_classes)), dtype=np.float64)
    out[:, np.asarray(estimator.classes_, dtype=np.int64)] = probs
    return out


@model("svc", SK_MODALITIES, "support vector classifier (RBF kernel; Platt-scaled probabilities)",
       framework="sklearn")
def svc(input_shape, num_classes, C: float = 1.0, kernel: str = "rbf", gamma: str | float = "scale"):
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.svm import SVC

    # Platt scaling fitted on 5 cross-validation folds, then one SVC on all the data: what
    # SVC(probability=True) did, which scikit-learn 1.9 deprecates in favour of this. Deterministic folds,
    # so the estimator needs no random_state.
    return CalibratedClassifierCV(SVC(C=C, kernel=kernel, gamma=gamma), method="sigmoid", cv=5, ensemble=False)


@model("random_forest", SK_MODALITIES, "random forest of fully grown trees (scikit-learn)", framework="sklearn")
def random_forest(input_shape, num_classes, n_estimators: int = 100, max_depth: int | None = None,
                  min_samples_leaf: int = 1):
    from sklearn.ensemble import RandomForestClassifier

    return RandomForestClassifier(n_estimators=int(n_estimators), max_depth=max_depth,
                                  min_samples_leaf=int(min_samples_leaf))


@model("logistic_regression_sk", SK_MODALITIES, "L2-regularised multinomial logistic regression (scikit-learn)",
       framework="sklearn")
def logistic_regression_sk(input_shape, num_classes, C: float = 1.0, max_iter: int = 1000):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=C, max_iter=int(max_iter))


@model("knn", SK_MODALITIES, "k-nearest neighbours (scikit-learn); memorises its training set by design",
       framework="sklearn")
def knn(input_shape, num_classes, n_neighbors: int = 5, weights: str = "uniform"):
    from sklearn.neighbors import KNeighborsClassifier

    return KNeighborsClassifier(n_neighbors=int(n_neighbors), weights=weights)
