"""Dataset loaders (a registry) and the split planner."""

from cyphercat.data.base import Dataset, check_dataset, dataset, from_arrays, load_dataset

__all__ = ["Dataset", "check_dataset", "dataset", "from_arrays", "load_dataset"]
