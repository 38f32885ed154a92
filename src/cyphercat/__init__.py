"""Cyphercat: how much does a trained model leak about its training data, and what does each defense buy back?

The whole audit from Python::

    import cyphercat as cc
    result = cc.audit(attacks=["loss", "lira_online"], reference_models=16, out="runs/py")
    print(result.attack("lira_online")["tpr_at_fpr"])

Bring your own data and architecture::

    ds = cc.from_arrays(x, y, name="mine", modality="tabular")
    result = cc.audit(dataset=ds, model=my_module_factory)      # factory(input_shape, num_classes) -> nn.Module
"""

from __future__ import annotations

from typing import Any

__version__ = "0.2.0"

from cyphercat.config import AuditSpec, load_spec, spec_from_dict  # noqa: E402
from cyphercat.data.base import Dataset, from_arrays, load_dataset  # noqa: E402
from cyphercat.errors import CyphercatError  # noqa: E402
from cyphercat.target import Model  # noqa: E402

__all__ = ["AuditSpec", "CyphercatError", "Dataset", "Model", "audit", "from_arrays", "load_dataset", "load_spec",
           "register_dataset", "register_model", "spec_from_dict"]


def register_model(factory: Any, name: str | None = None, modalities: tuple[str, ...] = ("image", "audio", "text",
                   "tabular"), batchable: bool = False) -> str:
    """Register an ``nn.Module`` factory ``f(input_shape, num_classes, **params)``; returns its spec name.

    The default name is ``module:qualname``, the same form a YAML spec uses to import a factory."""
    from cyphercat.registry import MODELS

    name = name or f"{factory.__module__}:{factory.__qualname__}"
    factory.modalities = getattr(factory, "modalities", modalities)
    factory.description = getattr(factory, "description", factory.__doc__ or "user-supplied model")
    factory.batchable = getattr(factory, "batchable", batchable)
    factory.framework = getattr(factory, "framework", "torch")
    MODELS.add_runtime(name, factory)
    return name


def register_dataset(dataset: Dataset) -> str:
    """Make an in-memory dataset nameable in a spec as ``python:<name>`` (this process only)."""
    from cyphercat.registry import DATASETS

    name = f"python:{dataset.name}"

    def loader(data_dir=None) -> Dataset:
        return dataset

    loader.modality, loader.description, loader.present = dataset.modality, "in-memory dataset", lambda d: True
    DATASETS.add_runtime(name, loader)
    return name


def audit(spec: AuditSpec | str | None = None, *, out: str | None = None, dataset: Dataset | None = None,
          model: Any = None, target: Model | None = None, members: Any = None, **fields: Any):
    """Run an audit and return its :class:`cyphercat.results.AuditResult`.

    ``spec``: an :class:`AuditSpec`, a YAML path, or None for the built-in digits audit; ``fields``
    override top-level spec fields (``seed=1``, ``attacks=["loss"]``, ``reference_models=8``).
    ``model``: an ``nn.Module`` factory to use as the target (and shadow) architecture.
    ``target``/``members``: audit a model trained elsewhere on ``dataset[members]``."""
    from cyphercat.pipeline import run_audit

    base = spec if isinstance(spec, AuditSpec) else load_spec(spec)
    data = base.canonical()
    if model is not None:
        name = model if isinstance(model, str) else register_model(model)
        data["target"] = {**data["target"], "model": {"name": name, "params": {}}}
    if dataset is not None:
        data["dataset"] = {"name": register_dataset(dataset), "params": {}}
    data.update(fields)
    return run_audit(spec_from_dict(data), out, dataset=dataset, target=target, members=members,
                     command="python api")
