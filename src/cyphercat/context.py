"""What attacks share within one evaluation: the target, shadow models, the reference pool, signals.

Everything is computed lazily and memoised, so an attack run pays only for what it uses and attacks
in one run share models. Models are trained through the backend and the cache (see ``backends``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import cached_property, partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cyphercat.augment import augmentations
from cyphercat.backends import JobEnv, ModelBuilder, TrainJob, job_key
from cyphercat.cache import ModelCache
from cyphercat.config import AuditSpec, DefenseSpec, ModelTraining
from cyphercat.data.base import Dataset
from cyphercat.data.splits import SplitPlan, membership_matrix
from cyphercat.defenses.base import Defense, DefenseData, make_defense
from cyphercat.errors import CyphercatError
from cyphercat.models.sklearn import features as sk_features
from cyphercat.models.sklearn import predict_proba as sk_predict_proba
from cyphercat.models.zoo import is_sklearn
from cyphercat.progress import get_progress
from cyphercat.registry import MODELS
from cyphercat.seeding import Seeds
from cyphercat.target import Model


def fingerprint(ds: Dataset) -> str:
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(ds.x).tobytes() if ds.x.dtype != object else repr(ds.x.tolist()).encode())
    h.update(np.ascontiguousarray(ds.y).tobytes())
    h.update(f"{ds.x.shape}{ds.x.dtype}{ds.num_classes}".encode())
    return h.hexdigest()


@dataclass
class Shadow:
    model: Model
    dataset: Dataset
    in_idx: np.ndarray
    out_idx: np.ndarray


@dataclass
class ReferencePool:
    """Signals of M reference models on the query set (candidates first, then population records).

    ``membership[m, j]`` says whether model m trained on candidate j; ``log_probs`` is
    (models, augmentations, queries, classes)."""

    membership: np.ndarray
    log_probs: np.ndarray
    query_idx: np.ndarray
    n_candidates: int


@dataclass
class RunShared:
    spec: AuditSpec
    seeds: Seeds
    device: torch.device
    dataset: Dataset
    plan: SplitPlan
    cache: ModelCache
    backend: Any
    shadow_dataset: Dataset | None = None
    out_dir: Path | None = None
    model_params: dict[str, Any] = field(default_factory=dict)
    memo: dict[Any, Any] = field(default_factory=dict)
    target: Model | None = None  # a target trained elsewhere (bring your own); None = train it here

    def _defense_data(self, reference: np.ndarray) -> DefenseData:
        ds, plan = self.dataset, self.plan
        target = self.spec.target
        # a ModelBuilder, not a closure: process and Ray workers receive it with the job environment
        build = ModelBuilder(target.model.name, {**self.model_params, **target.model.params},
                             tuple(ds.input_shape), ds.num_classes, "target.model")
        return DefenseData(reference_x=ds.x[reference], reference_y=ds.y[reference],
                           validation_x=ds.x[plan.validation], validation_y=ds.y[plan.validation],
                           build=build, num_classes=ds.num_classes, modality=ds.modality,
                           value_range=ds.value_range, training=target.training)

    @cached_property
    def aux(self) -> DefenseData:
        """The defender's extra data: the defender split (never the population attacks draw on)."""
        return self._defense_data(self.plan.defender)

    @cached_property
    def attacker_aux(self) -> DefenseData:
        """What an adaptive attacker imitating the defense on its own models holds: the population."""
        return self._defense_data(self.plan.population)

    @cached_property
    def env(self) -> JobEnv:
        ds, plan = self.dataset, self.plan
        held = hashlib.sha256()
        for part in (plan.defender, plan.population, plan.validation):
            held.update(np.ascontiguousarray(part, dtype=np.int64).tobytes() + b"|")
        return JobEnv(ds.x, ds.y, fingerprint(ds), ds.input_shape, ds.num_classes, self.device, self.aux,
                      self.model_params, threads=self.spec.threads, attacker_aux=self.attacker_aux,
                      aux_fingerprint=held.hexdigest())


class AuditContext:
    """The ``ctx`` handed to attacks. One per evaluation (defense setting)."""

    def __init__(self, shared: RunShared, defense_spec: DefenseSpec | None = None, evaluation_id: str = "none"):
        self.shared = shared
        self.spec = shared.spec
        self.seeds = shared.seeds
        self.device = shared.device
        self.dataset = shared.dataset
        self.plan = shared.plan
        self.out_dir = shared.out_dir
        self.defense_spec = defense_spec
        self.evaluation_id = evaluation_id
        self.defense: Defense | None = make_defense(defense_spec.name, defense_spec.params) if defense_spec else None

    # ---- training -----------------------------------------------------------------------------
    def _training_defense(self, attacker: bool) -> DefenseSpec | None:
        if self.defense is None or self.defense.stage != "training":
            return None
        if attacker and not self.spec.attacker_knows_defense:
            return None
        return self.defense_spec

    def _wrap(self, model: Model, attacker: bool, role: str) -> Model:
        if self.defense is None or self.defense.stage != "inference":
            return model
        if attacker and not self.spec.attacker_knows_defense:
            return model
        aux = self.shared.attacker_aux if attacker else self.shared.aux
        return self.defense.wrap(model, aux, self.seeds.int("defense", role))

    def _run_jobs(self, jobs: list[TrainJob], env: JobEnv, description: str):
        bar = get_progress().task(description, total=len(jobs))
        if jobs and is_sklearn(MODELS.get(jobs[0].model.name)):
            # scikit-learn estimators are refitted every run: caching them would need pickle.
            for i, job in enumerate(jobs):
                if job.defense is not None:
                    raise CyphercatError("defenses", f"{job.defense.name} changes how a torch model trains; "
                                         f"{job.model.name} is a scikit-learn estimator", "use an output defense")
                est = env.build(job)
                est.fit(sk_features(env.x[job.indices]), env.y[job.indices])
                bar.advance()
                yield i, est, {}
            return
        store = self.shared.memo.setdefault("states", {})
        keys = [job_key(j, env) for j in jobs]
        todo = [i for i, k in enumerate(keys) if k not in store]
        for i in (i for i, k in enumerate(keys) if k in store):
            bar.advance()
            yield (i, *store[keys[i]])
        for j, state, info in self.shared.backend.run([jobs[i] for i in todo], env, self.shared.cache,
                                                      on_done=bar.advance):
            if not self.shared.cache.enabled:  # the cache would otherwise serve the next lookup
                store[keys[todo[j]]] = (state, info)
            yield todo[j], state, info

    def _model(self, obj: Any, env: JobEnv, info: dict) -> Model:
        if isinstance(obj, torch.nn.Module):
            return Model(obj, device=self.device, info=info)
        return Model(predict_proba=partial(sk_predict_proba, obj, num_classes=env.num_classes), info=info)

    def _load(self, job: TrainJob, env: JobEnv, state: dict[str, torch.Tensor]) -> torch.nn.Module:
        if not isinstance(state, dict):  # a fitted scikit-learn estimator
            return state
        net = env.build(job)
        if self.defense is not None and job.defense is not None and hasattr(self.defense, "prepare_module"):
            net = self.defense.prepare_module(net)
        net.load_state_dict(state)
        return net.to(self.device).eval()

    def _job(self, role: str, idx: np.ndarray, mt: ModelTraining, dspec: DefenseSpec | None) -> TrainJob:
        return TrainJob(role, np.asarray(idx), mt.model, mt.training, self.seeds.int(role, "init"),
                        self.seeds.int(role, "train"), dspec)

    def _reference_jobs(self, m: int, dspec: DefenseSpec | None) -> tuple[np.ndarray, list[TrainJob]]:
        membership = membership_matrix(m, self.n_candidates, self.seeds.numpy("membership", m))
        mt = self.spec.target
        jobs = [TrainJob(f"reference{i}", self.plan.candidates[membership[i]], mt.model, mt.training,
                         self.seeds.int("reference", i, "init"), self.seeds.int("reference", i, "train"), dspec)
                for i in range(m)]
        return membership, jobs

    def prefetch(self, needs: set[str]) -> None:
        """Train, in one backend call, every model the attacks will ask for, so the backend can batch the
        target, the shadow and the reference models into ensembles (bit-identical to training them one
        by one). Later lookups then hit the cache, or the in-memory store when the cache is off."""
        if is_sklearn(MODELS.get(self.spec.target.model.name)):
            return
        jobs = []
        if self.shared.target is None and not self.spec.target.weights:
            jobs.append(self._job("target", self.plan.members, self.spec.target, self._training_defense(False)))
        if "shadow" in needs and len(self.plan.shadow_in) and len(self.plan.shadow_out) \
                and not is_sklearn(MODELS.get(self.spec.shadow_training.model.name)):
            jobs.append(self._job("shadow", self.plan.shadow_in, self.spec.shadow_training,
                                  self._training_defense(True)))
        if "reference" in needs and self.spec.reference_models >= 2 and self.spec.reference_models % 2 == 0:
            jobs += self._reference_jobs(self.spec.reference_models, self._training_defense(True))[1]
        if len(jobs) > 1:
            for _ in self._run_jobs(jobs, self.shared.env, "training models"):
                pass

    def train_model(self, role: str, idx: np.ndarray, model_training: ModelTraining | None = None, *,
                    attacker: bool = True, defended: bool = True) -> Model:
        """Train (or fetch from the cache) a model of ``model_training`` (default: the target's) on
        ``dataset[idx]``; seeds derive from ``role``. ``attacker`` models get the defense only when the
        attacker knows it; ``defended=False`` never applies it."""
        mt = model_training or self.spec.target
        dspec = self._training_defense(attacker) if defended else None
        job = self._job(role, idx, mt, dspec)
        env = self.shared.env
        memo_key = ("model", role, mt.model_dump_json(), dspec.model_dump_json() if dspec else None,
                    hashlib.sha256(np.asarray(idx, np.int64).tobytes()).hexdigest())
        if memo_key not in self.shared.memo:
            [(_, state, info)] = list(self._run_jobs([job], env, f"training {role}"))
            self.shared.memo[memo_key] = (self._load(job, env, state), info)
        net, info = self.shared.memo[memo_key]
        model = self._model(net, env, info)
        return self._wrap(model, attacker, role) if defended else model

    @cached_property
    def target(self) -> Model:
        if self.shared.target is not None:
            if self._training_defense(False) is not None:
                raise CyphercatError("defenses", f"{self.defense_spec.name} changes training, but the target was "
                                     "trained elsewhere", "audit a target trained by cyphercat, or use output defenses")
            return self._wrap(self.shared.target, False, "target")
        if self.spec.target.weights:
            if self._training_defense(False) is not None:
                raise CyphercatError("defenses", f"{self.defense_spec.name} changes training, but target.weights "
                                     "were trained elsewhere", "drop target.weights or use output defenses")
            from cyphercat.pretrained import load_weights

            net = self.shared.env.build(TrainJob("target", self.plan.members, self.spec.target.model,
                                                 self.spec.target.training, 0, 0))
            net = load_weights(net, self.spec.target.weights).to(self.device)
            return self._wrap(Model(net, device=self.device), False, "target")
        return self.train_model("target", self.plan.members, attacker=False)

    @cached_property
    def shadow(self) -> Shadow:
        if len(self.plan.shadow_in) == 0 or len(self.plan.shadow_out) == 0:
            raise CyphercatError("splits.shadow_members", "this attack needs shadow data but the shadow split is empty",
                                 "set splits.shadow_members and splits.shadow_nonmembers > 0")
        model = self.train_model("shadow", self.plan.shadow_in, self.spec.shadow_training)
        return Shadow(model, self.dataset, self.plan.shadow_in, self.plan.shadow_out)

    @cached_property
    def transfer_shadow(self) -> Shadow:
        """A shadow model trained on a different dataset (ML-Leaks adversary 2)."""
        ds = self.shared.shadow_dataset
        if ds is None:
            raise CyphercatError("shadow_dataset", "ml_leaks_2 needs a shadow dataset different from the target's",
                                 "set shadow_dataset (e.g. {name: synthetic})")
        n = min(len(ds) // 2, max(self.spec.splits.shadow_members, 2))
        order = self.seeds.numpy("transfer_split").permutation(len(ds))
        in_idx, out_idx = np.sort(order[:n]), np.sort(order[n:2 * n])
        mt = self.spec.shadow_training
        job = TrainJob("transfer_shadow", in_idx, mt.model, mt.training, self.seeds.int("transfer_shadow", "init"),
                       self.seeds.int("transfer_shadow", "train"), self._training_defense(True))
        env = JobEnv(ds.x, ds.y, fingerprint(ds), ds.input_shape, ds.num_classes, self.device, None, {},
                     threads=self.spec.threads)
        key = ("transfer", job.defense.model_dump_json() if job.defense else None)
        if key not in self.shared.memo:
            [(_, state, _info)] = list(self._run_jobs([job], env, "training transfer shadow"))
            self.shared.memo[key] = self._load(job, env, state)
        model = self._wrap(self._model(self.shared.memo[key], env, {}), True, "transfer_shadow")
        return Shadow(model, ds, in_idx, out_idx)

    # ---- signals ------------------------------------------------------------------------------
    @cached_property
    def candidates(self) -> np.ndarray:
        return self.plan.candidates

    @cached_property
    def is_member(self) -> np.ndarray:
        return self.plan.is_member

    @cached_property
    def query_idx(self) -> np.ndarray:
        """Candidates, then population records (RMIA's reference samples z)."""
        return np.concatenate([self.plan.candidates, self.plan.population])

    def query_inputs(self, n_aug: int) -> list[np.ndarray]:
        key = ("queries", n_aug)
        if key not in self.shared.memo:
            x = self.dataset.x[self.query_idx]
            self.shared.memo[key] = augmentations(x, self.dataset.modality, n_aug, seed=self.seeds.int("augment"))
        return self.shared.memo[key]

    def target_log_probs(self, n_aug: int = 1) -> np.ndarray:
        """(augmentations, queries, classes) for the deployed target."""
        key = ("target_lp", n_aug)
        memo = self.__dict__.setdefault("_lp", {})
        if key not in memo:
            memo[key] = np.stack([self.target.log_probs(q) for q in self.query_inputs(n_aug)])
        return memo[key]

    @property
    def n_candidates(self) -> int:
        return len(self.plan.candidates)

    def reference_pool(self, n_models: int | None = None, n_aug: int = 1) -> ReferencePool:
        m = self.spec.reference_models if n_models is None else n_models
        if m < 1:
            raise CyphercatError("reference_models", f"{m} reference models requested",
                                 "set reference_models (or --reference-models) to at least 2")
        dspec = self._training_defense(True)
        key = ("pool", m, dspec.model_dump_json() if dspec else None, self.evaluation_id
               if self.defense is not None and self.defense.stage == "inference" else None)
        memo = self.shared.memo.get(key)
        if memo is not None and memo.log_probs.shape[1] >= n_aug:
            return ReferencePool(memo.membership, memo.log_probs[:, :n_aug], memo.query_idx, memo.n_candidates)
        n_cand = self.n_candidates
        membership, jobs = self._reference_jobs(m, dspec)
        queries = self.query_inputs(n_aug)
        out = None
        env = self.shared.env
        for i, state, info in self._run_jobs(jobs, env, f"reference models ({m})"):
            model = self._wrap(self._model(self._load(jobs[i], env, state), env, info), True, f"reference{i}")
            lp = np.stack([model.log_probs(q) for q in queries])
            if out is None:
                out = np.zeros((m,) + lp.shape, np.float32)
            out[i] = lp
        pool = ReferencePool(membership, out, self.query_idx, n_cand)
        self.shared.memo[key] = pool
        return pool
