"""Datasets that need no files: scikit-learn's digits (the embedded default) and a synthetic task."""

from __future__ import annotations

import numpy as np
from sklearn.datasets import load_digits, make_classification

from cyphercat.data.base import Dataset, dataset
from cyphercat.errors import CyphercatError


@dataset("digits", "image", "scikit-learn's 8x8 handwritten digits (1,797 records, 10 classes); shipped offline")
def digits(data_dir=None, flatten: bool = False) -> Dataset:
    bunch = load_digits()
    x = (bunch.images / 16.0).astype(np.float32)
    x = x.reshape(len(x), -1) if flatten else x[:, None, :, :]
    return Dataset(x=x, y=bunch.target.astype(np.int64), name="digits", modality="image", num_classes=10,
                   value_range=(0.0, 1.0), class_names=tuple(str(i) for i in range(10)))


@dataset("synthetic", "tabular", "scikit-learn make_classification; few records per class and many features "
         "make a model memorise")
def synthetic(data_dir=None, n_samples: int = 2000, n_features: int = 100, n_informative: int = 10,
              n_classes: int = 10, n_clusters_per_class: int = 1, class_sep: float = 1.0, flip_y: float = 0.0,
              random_state: int = 0, sensitive_feature: int | None = None,
              sensitive_strength: float = 1.5) -> Dataset:
    """With ``sensitive_feature`` set, that column becomes a binary attribute correlated with the label
    (for attribute inference): its probability of being 1 rises with ``sensitive_strength`` for odd labels."""
    if n_informative > n_features:
        raise CyphercatError("dataset.params.n_informative", f"{n_informative} > n_features={n_features}",
                             "make n_informative at most n_features")
    if n_classes * n_clusters_per_class > 2 ** n_informative:
        raise CyphercatError("dataset.params.n_classes", "too many classes for n_informative",
                             "raise n_informative or lower n_classes")
    x, y = make_classification(n_samples=n_samples, n_features=n_features, n_informative=n_informative,
                               n_redundant=0, n_classes=n_classes, n_clusters_per_class=n_clusters_per_class,
                               class_sep=class_sep, flip_y=flip_y, random_state=random_state)
    x = x.astype(np.float32)
    extra = {}
    if sensitive_feature is not None:
        if not 0 <= sensitive_feature < n_features:
            raise CyphercatError("dataset.params.sensitive_feature", f"{sensitive_feature} is outside 0..{n_features - 1}",
                                 "pick a column index inside the feature range")
        rng = np.random.default_rng(random_state + 1)
        logit = sensitive_strength * np.where(y % 2 == 1, 1.0, -1.0) + 0.5 * x[:, (sensitive_feature + 1) % n_features]
        x[:, sensitive_feature] = (rng.random(n_samples) < 1 / (1 + np.exp(-logit))).astype(np.float32)
        extra["sensitive_feature"] = int(sensitive_feature)
        extra["sensitive_values"] = [0.0, 1.0]
    lo, hi = float(x.min()), float(x.max())
    return Dataset(x=x, y=y.astype(np.int64), name="synthetic", modality="tabular", num_classes=n_classes,
                   value_range=(lo, hi), extra=extra)
