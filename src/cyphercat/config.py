"""The audit spec: YAML -> frozen, validated pydantic models with a canonical hash.

A spec says everything that determines the numbers of a run; two runs of equal specs (same hash)
give the same results. Names of datasets, models, attacks and defenses are checked against the
registries here, so a typo fails before any training starts.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from cyphercat.errors import CyphercatError

SCHEMA_VERSION = 1


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _named(value: Any) -> Any:
    """Allow the shorthand ``loss`` for ``{name: loss}``."""
    if isinstance(value, str):
        return {"name": value}
    return value


class Named(Strict):
    name: str = Field(min_length=1)
    params: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        return _named(value)


class DatasetSpec(Named):
    pass


class ModelSpec(Named):
    pass


class AttackSpec(Named):
    pass


class DefenseSpec(Named):
    pass


class TrainingSpec(Strict):
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = Field(1e-3, gt=0)
    epochs: int = Field(300, ge=1)
    batch_size: int = Field(64, ge=1)
    weight_decay: float = Field(0.0, ge=0)
    momentum: float = Field(0.9, ge=0, lt=1)


class ModelTraining(Strict):
    model: ModelSpec = ModelSpec(name="mlp", params={"hidden": [512]})
    training: TrainingSpec = TrainingSpec()
    weights: str | None = Field(None, description="target only: audit these trained weights (safetensors or a "
                                "torch weights_only file) instead of training; needs splits.members_file")


class SplitSpec(Strict):
    target_members: int = Field(300, ge=2)
    target_nonmembers: int = Field(300, ge=2)
    shadow_members: int = Field(300, ge=0)
    shadow_nonmembers: int = Field(300, ge=0)
    validation: int = Field(0, ge=0)
    defender: int | None = Field(None, ge=0, description="records only the defender holds (distillation's transfer "
                                 "set, adversarial regularisation's and MemGuard's non-member references); None = "
                                 "half of the records left after the fixed splits when a defense needs them, else 0")
    population: int | None = Field(None, ge=0, description="records left for population data; None = the rest")
    members_file: str | None = Field(None, description="indices (.npy or one per line) of the records a target "
                                     "trained elsewhere used; the other roles come from the remaining records")


class MetricsSpec(Strict):
    bootstrap: int = Field(200, ge=0, le=10000)
    fprs: tuple[float, ...] = (0.001, 0.01, 0.1)
    confidence: float = Field(0.95, gt=0, lt=1)


class CacheSpec(Strict):
    enabled: bool = True
    dir: str | None = None


# Fields that never change the numbers of a run: left out of its hash and of results.json.
EXECUTION_FIELDS = ("backend", "workers", "ray_address", "cache")

DEFAULT_ATTACKS = ("ml_leaks_1", "ml_leaks_2", "ml_leaks_3", "loss", "confidence", "entropy", "modified_entropy",
                   "lira_online", "lira_offline", "rmia_online", "rmia_offline", "label_only", "gap")


class AuditSpec(Strict):
    seed: int = Field(0, ge=0, lt=2**63)
    dataset: DatasetSpec = DatasetSpec(name="digits")
    shadow_dataset: DatasetSpec | None = DatasetSpec(
        name="synthetic", params={"n_samples": 1200, "n_features": 64, "n_classes": 10, "n_informative": 20}
    )
    splits: SplitSpec = SplitSpec()
    target: ModelTraining = ModelTraining()
    shadow: ModelTraining | None = Field(None, description="attacker's shadow models; None = same as target")
    attack_model: ModelTraining = ModelTraining(
        model=ModelSpec(name="mlp", params={"hidden": [64]}),
        training=TrainingSpec(epochs=200, batch_size=128, lr=1e-3),
    )
    attacks: tuple[AttackSpec, ...] = tuple(AttackSpec(name=a) for a in DEFAULT_ATTACKS)
    reference_models: int = Field(16, ge=0)
    defenses: tuple[DefenseSpec, ...] = ()
    attacker_knows_defense: bool = True
    metrics: MetricsSpec = MetricsSpec()
    cache: CacheSpec = CacheSpec()
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int = Field(1, ge=1, le=256, description="torch intra-op threads for training and queries; fixed, "
                         "because BLAS results can depend on the thread count (so it is part of the hash)")
    backend: Literal["serial", "process", "ray"] = "serial"
    workers: int = Field(1, ge=1)
    ray_address: str | None = None

    @field_validator("attacks", "defenses", mode="before")
    @classmethod
    def _list_shorthand(cls, value: Any) -> Any:
        if isinstance(value, list | tuple):
            return tuple(_named(v) for v in value)
        return value

    @model_validator(mode="after")
    def _check_names(self) -> AuditSpec:
        from cyphercat.registry import ATTACKS, DATASETS, DEFENSES, MODELS

        DATASETS.get(self.dataset.name, "dataset.name")
        if self.shadow_dataset is not None:
            DATASETS.get(self.shadow_dataset.name, "shadow_dataset.name")
        for role in ("target", "shadow", "attack_model"):
            part = getattr(self, role)
            if part is not None:
                MODELS.get(part.model.name, f"{role}.model.name")
        seen = set()
        for i, attack in enumerate(self.attacks):
            ATTACKS.get(attack.name, f"attacks[{i}].name")
            if attack.name in seen:
                raise CyphercatError(f"attacks[{i}]", f"attack {attack.name!r} is listed twice", "list it once")
            seen.add(attack.name)
        for i, defense in enumerate(self.defenses):
            DEFENSES.get(defense.name, f"defenses[{i}].name")
        return self

    @property
    def shadow_training(self) -> ModelTraining:
        return self.shadow or self.target

    def canonical(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def recorded(self) -> dict[str, Any]:
        """The spec without execution settings (how and where to run, not what): results.json and the
        hash, so a run on Ray or a process pool is byte-identical to a serial one."""
        return {k: v for k, v in self.canonical().items() if k not in EXECUTION_FIELDS}

    def hash(self) -> str:
        return canonical_hash(self.recorded())


def canonical_hash(obj: Any) -> str:
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _format_validation_error(err: ValidationError) -> CyphercatError:
    first = err.errors()[0]
    # a field name from the user's file may hold anything (newlines included): keep the message one line
    loc = ".".join(str(p) if str(p).isprintable() else repr(p) for p in first["loc"]) or "spec"
    msg = first["msg"]
    if first["type"] == "extra_forbidden":
        return CyphercatError(loc, "unknown spec field", "remove it or check its spelling (see examples/*.yaml)")
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    return CyphercatError(loc, msg, "fix this field of the spec")


def _reject_nonfinite(obj: Any, path: str = "spec") -> None:
    if isinstance(obj, float) and not math.isfinite(obj):
        raise CyphercatError(path, f"{obj} is not a finite number", "use a finite number")
    if isinstance(obj, dict):
        for k, v in obj.items():
            _reject_nonfinite(v, f"{path}.{k}" if path != "spec" else str(k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            _reject_nonfinite(v, f"{path}[{i}]")


def spec_from_dict(data: Any, **overrides: Any) -> AuditSpec:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise CyphercatError("spec", f"expected a mapping at the top level, got {type(data).__name__}",
                             "write the spec as `key: value` lines (see examples/digits.yaml)")
    for key in data:
        if not isinstance(key, str):
            raise CyphercatError("spec", f"field name {key!r} is not a string", "quote field names as text")
    data = {**data, **{k: v for k, v in overrides.items() if v is not None}}
    _reject_nonfinite(data)
    try:
        return AuditSpec.model_validate(data)
    except ValidationError as err:
        cause = err.errors()[0].get("ctx", {}).get("error")
        if isinstance(cause, CyphercatError):
            raise cause from None
        raise _format_validation_error(err) from None
    except RecursionError:
        raise CyphercatError("spec", "nested too deeply", "flatten the spec") from None


def load_spec(path: str | Path | None = None, **overrides: Any) -> AuditSpec:
    """Read a YAML spec (``yaml.safe_load``), or the built-in digits default when ``path`` is None."""
    if path is None:
        return spec_from_dict({}, **overrides)
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CyphercatError("spec", f"file {str(path)!r} does not exist", "give the path of a YAML spec") from None
    except (OSError, UnicodeDecodeError) as err:
        raise CyphercatError("spec", f"cannot read {str(path)!r}: {err}", "give a readable UTF-8 YAML file") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or "invalid YAML"
        raise CyphercatError("spec", f"malformed YAML in {path.name}{where}: {problem}",
                             "fix the YAML syntax (indentation, colons, quotes)") from None
    except RecursionError:
        raise CyphercatError("spec", "YAML nested too deeply", "flatten the spec") from None
    return spec_from_dict(data, **overrides)
