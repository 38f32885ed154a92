"""spec -> splits -> trained models (cached) -> signals -> attacks -> metrics -> results.

:func:`run_audit` is the one entry point the CLI and the Python API share. All input checks run before
anything is trained or written; outputs are written into a temporary directory that replaces
``out_dir`` only when complete, so a failed run never leaves a half-written output directory.
"""

from __future__ import annotations

import inspect
import logging
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

import cyphercat
from cyphercat.attacks.base import Attack, MembershipOutput, make_attack
from cyphercat.backends import get_backend
from cyphercat.cache import ModelCache
from cyphercat.config import AuditSpec
from cyphercat.context import AuditContext, RunShared
from cyphercat.data.base import Dataset, check_dataset, load_dataset
from cyphercat.data.splits import plan_splits
from cyphercat.defenses.base import evaluation_id, expand_sweeps, make_defense
from cyphercat.errors import CyphercatError
from cyphercat.files import write_atomic
from cyphercat.metrics import evaluate
from cyphercat.models.zoo import build_model, check_output
from cyphercat.progress import get_progress
from cyphercat.registry import DEFENSES, MODELS
from cyphercat.results import AttackResult, AuditResult, Evaluation, dumps, save_scores
from cyphercat.seeding import Seeds
from cyphercat.target import Model
from cyphercat.training.trainer import resolve_device, to_tensor, torch_threads

log = logging.getLogger(__name__)


def environment(device: torch.device) -> dict[str, str]:
    return {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
            "cyphercat": cyphercat.__version__, "device": device.type, "platform": platform.platform(terse=True)}


def _model_params(name: str, ds: Dataset) -> dict[str, Any]:
    """Dataset-derived parameters a factory asks for by name (a text model's vocabulary size)."""
    factory = MODELS.get(name)
    try:
        accepted = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return {}
    return {k: ds.extra[k] for k in ("vocab_size", "pad_id") if k in accepted and k in ds.extra}


def _check_compatibility(spec: AuditSpec, ds: Dataset, attacks: list[Attack], model_params: dict) -> None:
    users = [a.registry_name for a in attacks if "reference" in a.requires()]
    m = spec.reference_models
    if users and m < 2:
        raise CyphercatError("reference_models", f"{users[0]} needs at least 2 reference models (one complementary "
                             f"pair), got {m}", "set reference_models (or --reference-models) to 2 or more")
    if users and m % 2:
        raise CyphercatError("reference_models", f"{m} is odd but reference models are trained in complementary "
                             "pairs", f"use an even number, e.g. {m + 1}")
    for a in attacks:
        if ds.modality not in a.modalities:
            raise CyphercatError(f"attacks.{a.registry_name}", f"not defined for {ds.modality} data",
                                 f"remove it for this dataset (it works on: {', '.join(a.modalities)})")
        aug = getattr(a, "augmentations", 1)
        if ds.modality == "text" and isinstance(aug, int) and aug > 1 and a.registry_name != "label_only":
            raise CyphercatError(f"attacks.{a.registry_name}.params.augmentations",
                                 "augmentations are not defined for text data", "set augmentations: 1")
    net = build_model(spec.target.model.name, {**model_params, **spec.target.model.params}, ds.input_shape,
                      ds.num_classes, seed=0, field="target.model")
    if isinstance(net, torch.nn.Module):
        check_output(net, to_tensor(ds.x[:2], torch.device("cpu")), ds.num_classes, "target.model")


def _metrics(out: MembershipOutput, is_member: np.ndarray, spec: AuditSpec, seeds: Seeds, key: tuple):
    return evaluate(out.scores, is_member, out.threshold, fprs=spec.metrics.fprs, bootstrap=spec.metrics.bootstrap,
                    confidence=spec.metrics.confidence, rng=seeds.numpy("bootstrap", *key))


def _evaluate_one(ctx: AuditContext, attacks: list[tuple[str, dict]], scores: dict[str, np.ndarray]) -> Evaluation:
    spec, seeds, plan = ctx.spec, ctx.seeds, ctx.plan
    made = [make_attack(name, params, random_state=seeds.int("attack", name, ctx.evaluation_id))
            for name, params in attacks]
    ctx.prefetch(set().union(*(a.requires() for a in made)))
    target = ctx.target
    test_idx = np.concatenate([plan.nonmembers, plan.population])  # no defense trains on these
    target_info = {"train_accuracy": target.accuracy(ctx.dataset.x[plan.members], ctx.dataset.y[plan.members]),
                   "test_accuracy": target.accuracy(ctx.dataset.x[test_idx], ctx.dataset.y[test_idx])}
    defense: dict[str, Any] = {"name": "none", "params": {}, "stage": None, "epsilon": None}
    if ctx.defense is not None:
        info = target.info if ctx.defense.stage == "training" else ctx.defense.info()
        defense = {"name": ctx.defense_spec.name, "params": dict(ctx.defense_spec.params), "stage": ctx.defense.stage,
                   "epsilon": info.get("epsilon"), **{k: v for k, v in info.items() if k != "epsilon"}}
    results, extras = [], {}
    bar = get_progress().task(f"attacks [{ctx.evaluation_id}]", total=len(attacks))
    for (name, _), attack in zip(attacks, made, strict=True):
        t0 = time.perf_counter()
        out = attack.run(ctx)
        if isinstance(out, MembershipOutput):
            m = _metrics(out, ctx.is_member, spec, seeds, (name, ctx.evaluation_id))
            results.append(AttackResult(name, attack.kind, attack.observes, m, out.details, time.perf_counter() - t0))
            scores[f"{ctx.evaluation_id}/{name}"] = out.scores
        else:
            extras[attack.result_key or name] = out
        bar.advance()
    return Evaluation(ctx.evaluation_id, defense, spec.attacker_knows_defense, target_info, results, extras)


def prepare_run(spec: AuditSpec, *, dataset: Dataset | None = None, data_dir: Path | None = None,
                out_dir: Path | None = None, cache: ModelCache | None = None,
                target: Model | None = None, members: np.ndarray | None = None) -> tuple[RunShared, list]:
    """Load and check everything; raise CyphercatError before any training if something doesn't fit."""
    seeds = Seeds(spec.seed)
    device = resolve_device(spec.device)
    ds = check_dataset(dataset) if dataset is not None else load_dataset(spec.dataset.name, spec.dataset.params,
                                                                         data_dir)
    if members is None and spec.splits.members_file:
        from cyphercat.pretrained import load_members

        members = load_members(spec.splits.members_file)
    if spec.target.weights and members is None:
        raise CyphercatError("splits.members_file", "target.weights is set but nothing says which records it "
                             "trained on", "set splits.members_file to the indices of its training records")
    needs_defender = any(DEFENSES.get(d.name, f"defenses.{d.name}").uses_reference for d in spec.defenses)
    plan = plan_splits(len(ds), spec.splits, seeds.numpy("split"), members, needs_defender)
    if ds.prepare is not None:
        ds = check_dataset(ds.prepare(ds, plan.members).replace(prepare=None))
    model_params = _model_params(spec.target.model.name, ds)
    attack_specs = [(a.name, dict(a.params)) for a in spec.attacks]
    attacks = [make_attack(n, p, 0, f"attacks.{n}") for n, p in attack_specs]
    _check_compatibility(spec, ds, attacks, model_params)
    defenses = expand_sweeps(spec.defenses)
    made = [make_defense(d.name, d.params, f"defenses.{d.name}") for d in defenses]
    for a in attacks:
        a.check(ds, made)
    shadow_ds = None
    if any(a.registry_name == "ml_leaks_2" for a in attacks):
        if spec.shadow_dataset is None:
            raise CyphercatError("shadow_dataset", "ml_leaks_2 needs a shadow dataset different from the target's",
                                 "set shadow_dataset (e.g. {name: synthetic}) or drop ml_leaks_2")
        shadow_ds = load_dataset(spec.shadow_dataset.name, spec.shadow_dataset.params, data_dir, "shadow_dataset")
        if shadow_ds.prepare is not None:
            shadow_ds = shadow_ds.prepare(shadow_ds, np.arange(len(shadow_ds))).replace(prepare=None)
    backend = get_backend(spec.backend, workers=spec.workers, address=spec.ray_address)
    cache = cache or ModelCache(spec.cache.dir, enabled=spec.cache.enabled)
    cache.check()
    shared = RunShared(spec, seeds, device, ds, plan, cache, backend, shadow_ds, out_dir, model_params,
                       target=target)
    for d in made:  # e.g. DP-SGD on a layer Opacus cannot fix: fail before the baseline trains
        d.check(shared.aux)
        if spec.attacker_knows_defense:
            d.check(shared.attacker_aux)
    return shared, [None, *defenses]


def run_audit(spec: AuditSpec, out_dir: str | Path | None = None, *, dataset: Dataset | None = None,
              data_dir: str | Path | None = None, command: str = "", cache: ModelCache | None = None,
              target: Model | None = None, members: np.ndarray | None = None,
              write_reports: bool = True) -> AuditResult:
    """Run the audit ``spec`` describes. ``dataset`` replaces the spec's dataset (bring your own data);
    ``target`` is a model trained elsewhere on ``dataset[members]`` (bring your own target: give the
    ``members`` indices it trained on; the other roles are drawn from the remaining records)."""
    t0 = time.perf_counter()
    final = Path(out_dir) if out_dir is not None else None
    work = None
    if final is not None:
        final.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        with torch_threads(spec.threads):
            shared, evaluations = prepare_run(spec, dataset=dataset, data_dir=Path(data_dir) if data_dir else None,
                                              out_dir=work, cache=cache, target=target, members=members)
            scores: dict[str, np.ndarray] = {"candidates": shared.plan.candidates.astype(np.int64),
                                             "is_member": shared.plan.is_member,
                                             **{f"split/{k}": v.astype(np.int64) for k, v in shared.plan.as_dict().items()}}
            attack_specs = [(a.name, dict(a.params)) for a in spec.attacks]
            evals = []
            for dspec in evaluations:
                ctx = AuditContext(shared, dspec, evaluation_id(dspec))
                evals.append(_evaluate_one(ctx, attack_specs, scores))
            ds = shared.dataset
            result = AuditResult(
                spec=spec.recorded(), spec_hash=spec.hash(), seed=spec.seed, command=command or "python api",
                environment=environment(shared.device),
                dataset={"name": ds.name, "modality": ds.modality, "num_classes": ds.num_classes,
                         "input_shape": list(ds.input_shape), "n_records": len(ds)},
                splits={k: len(v) for k, v in shared.plan.as_dict().items()}, evaluations=evals, scores=scores,
                cache={"hits": shared.cache.hits, "misses": shared.cache.misses, "rebuilt": shared.cache.rebuilt})
            if spec.defenses:
                from cyphercat.scorecard import build_scorecard

                result.scorecard = build_scorecard(result)
            result.runtime_s = time.perf_counter() - t0
            if work is not None:
                _write_outputs(work, result, shared.dataset, write_reports)
                if final.exists():
                    shutil.rmtree(final)
                work.rename(final)
                work = None
            return result
    finally:
        if work is not None:
            shutil.rmtree(work, ignore_errors=True)


def _write_outputs(out: Path, result: AuditResult, dataset: Dataset, write_reports: bool) -> None:
    write_atomic(out / "results.json", dumps(result).encode())
    save_scores(out / "scores.npz", result.scores)
    if result.scorecard is not None:
        from cyphercat.scorecard import write_scorecard

        write_scorecard(out, result.scorecard)
    if write_reports:
        try:
            from cyphercat.reports import write_all
        except ImportError:  # reports land separately; results stay usable without them
            return
        write_all(out, result.to_dict(), result.scores, dataset=dataset)


def command_line() -> str:
    return " ".join(["cyphercat", *sys.argv[1:]])


def spec_with_defense(spec: AuditSpec, names: list[str]) -> AuditSpec:
    from cyphercat.config import spec_from_dict

    data = spec.canonical()
    data["defenses"] = [*data["defenses"], *({"name": n} for n in names)]
    return spec_from_dict(data)
