"""Typed results -> versioned JSON (``results.json``) and per-sample scores (``scores.npz``, no pickle)."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cyphercat.config import SCHEMA_VERSION
from cyphercat.errors import CyphercatError
from cyphercat.files import write_atomic
from cyphercat.metrics import AttackMetrics


def jsonable(obj: Any) -> Any:
    """Plain JSON types; non-finite floats become null (JSON has no NaN)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, np.bool_ | bool):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, float | np.floating):
        f = float(obj)
        return f if math.isfinite(f) else None
    if isinstance(obj, Path):
        return str(obj)
    return obj


@dataclass(frozen=True)
class AttackResult:
    name: str
    kind: str
    observes: str
    metrics: AttackMetrics
    details: dict[str, Any] = field(default_factory=dict)
    runtime_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "observes": self.observes, **jsonable(self.metrics),
                "details": jsonable(self.details), "runtime_s": round(self.runtime_s, 3)}


@dataclass(frozen=True)
class Evaluation:
    id: str
    defense: dict[str, Any]
    attacker_knows_defense: bool
    target: dict[str, float]
    attacks: list[AttackResult]
    extras: dict[str, Any] = field(default_factory=dict)  # inversion, attribute_inference

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "defense": jsonable(self.defense), "attacker_knows_defense": self.attacker_knows_defense,
                "target": jsonable(self.target), "attacks": [a.to_dict() for a in self.attacks], **jsonable(self.extras)}


@dataclass
class AuditResult:
    spec: dict[str, Any]
    spec_hash: str
    seed: int
    command: str
    environment: dict[str, str]
    dataset: dict[str, Any]
    splits: dict[str, int]
    evaluations: list[Evaluation]
    scores: dict[str, np.ndarray]
    runtime_s: float = 0.0
    scorecard: list[dict[str, Any]] | None = None
    cache: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = {"schema_version": SCHEMA_VERSION, "spec_hash": self.spec_hash, "spec": self.spec, "seed": self.seed,
               "command": self.command, "environment": self.environment, "runtime_s": round(self.runtime_s, 2),
               "dataset": self.dataset, "splits": self.splits,
               "evaluations": [e.to_dict() for e in self.evaluations]}
        if self.scorecard is not None:
            out["scorecard"] = jsonable(self.scorecard)
        return out

    def attack(self, name: str, evaluation: str = "none") -> dict[str, Any]:
        for ev in self.evaluations:
            if ev.id == evaluation:
                for a in ev.attacks:
                    if a.name == name:
                        return a.to_dict()
        raise KeyError(f"no attack {name!r} in evaluation {evaluation!r}")


def dumps(result: AuditResult) -> str:
    return json.dumps(result.to_dict(), indent=2, allow_nan=False) + "\n"


def save_scores(path: Path, scores: dict[str, np.ndarray]) -> None:
    import io

    buf = io.BytesIO()
    np.savez_compressed(buf, **scores)
    write_atomic(path, buf.getvalue())


def load_results(out_dir: str | Path, with_scores: bool = True) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Read ``results.json`` and (``with_scores``) ``scores.npz`` of a finished audit; never unpickles."""
    out_dir = Path(out_dir)
    path = out_dir / "results.json"
    try:
        results = json.loads(path.read_text())
    except FileNotFoundError:
        raise CyphercatError(str(path), "no results here", "give the --out directory of a finished audit") from None
    except (OSError, UnicodeDecodeError) as err:
        raise CyphercatError(str(path), f"unreadable results: {err}", "re-run the audit to rewrite it") from None
    except json.JSONDecodeError as err:
        raise CyphercatError(str(path), f"is not valid JSON ({err})", "re-run the audit to rewrite it") from None
    if not isinstance(results, dict) or results.get("schema_version") != SCHEMA_VERSION:
        raise CyphercatError(str(path), f"schema_version {results.get('schema_version') if isinstance(results, dict) else '?'}"
                             f" is not {SCHEMA_VERSION}", "re-run the audit with this version of cyphercat")
    if not isinstance(results.get("evaluations"), list):
        raise CyphercatError(str(path), "has no evaluations list", "re-run the audit to rewrite it")
    scores: dict[str, np.ndarray] = {}
    spath = out_dir / "scores.npz"
    if with_scores and spath.exists():
        try:
            with np.load(spath, allow_pickle=False) as npz:
                scores = {k: npz[k] for k in npz.files}
        except (OSError, ValueError) as err:
            raise CyphercatError(str(spath), f"unreadable scores: {err}", "re-run the audit to rewrite it") from None
    return results, scores
