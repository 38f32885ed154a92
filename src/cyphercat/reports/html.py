"""``report.html``: one self-contained page (inline CSS, images as data URIs, no script, no network).

Jinja2 autoescapes every value, so dataset, model and file names from the user cannot inject markup;
a Content-Security-Policy meta tag additionally forbids any fetch, should a template ever slip.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import jinja2
import numpy as np

from cyphercat.reports import plots
from cyphercat.reports.verdict import (
    ci_text,
    membership_attacks,
    most_exposed,
    num,
    pct,
    score_key,
    strongest_attack,
    verdict,
)

TEMPLATES = Path(__file__).parent / "templates"
MAX_SECTION_ROWS = 60


def environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["pct"] = pct
    return env


def _fpr_keys(attacks: list[dict[str, Any]]) -> list[str]:
    keys = {k for a in attacks for k in (a.get("tpr_at_fpr") or {})}
    return sorted(keys, key=lambda k: float(k) if _is_float(k) else math.inf)


def _is_float(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def attack_rows(evaluation: dict[str, Any]) -> tuple[list[str], list[dict[str, Any]]]:
    """Formatted cells of the attack table; shared with the Markdown summary."""
    attacks = membership_attacks(evaluation)
    fprs = _fpr_keys(attacks)
    best = strongest_attack(evaluation)
    rows = []
    for a in attacks:
        tprs = []
        for f in fprs:
            t = (a.get("tpr_at_fpr") or {}).get(f)
            ci = (a.get("tpr_at_fpr_ci") or {}).get(f)
            tprs.append({"value": pct(t), "ci": ci_text(ci, as_pct=True)})
        rows.append({
            "name": str(a.get("name")), "observes": str(a.get("observes", "")), "strongest": a is best,
            "auc": num(a.get("auc")), "auc_ci": ci_text(a.get("auc_ci")), "tprs": tprs,
            "advantage": num(a.get("advantage")), "precision": num(a.get("precision")),
            "recall": num(a.get("recall")), "epsilon": num(a.get("epsilon_lower_bound"), 2),
            "runtime": num(a.get("runtime_s"), 1),
        })
    return [f"{100 * float(f):g}%" if _is_float(f) else f for f in fprs], rows


def defense_label(evaluation: dict[str, Any]) -> str:
    d = evaluation.get("defense") or {}
    name = str(d.get("name", "none"))
    if name == "none":
        return "no defense"
    params = ", ".join(f"{k}={v}" for k, v in (d.get("params") or {}).items())
    eps = d.get("epsilon")
    label = f"{name} ({params})" if params else name
    return label + (f", ε = {eps:.3g}" if isinstance(eps, int | float) else "")


def _curves(evaluation: dict[str, Any], scores: dict[str, np.ndarray]) -> tuple[list, list[str]]:
    member = scores.get("is_member")
    curves, missing = [], []
    for a in membership_attacks(evaluation):
        key = score_key(str(evaluation.get("id")), str(a.get("name")))
        s = scores.get(key)
        if member is None or s is None or len(s) != len(member):
            missing.append(str(a.get("name")))
            continue
        label = f"{a.get('name')} (AUC {num(a.get('auc'))}, TPR@1% {pct((a.get('tpr_at_fpr') or {}).get('0.01'))})"
        curves.append((label, np.asarray(s), np.asarray(member, dtype=bool)))
    return curves, missing


def _text(v: Any) -> str:
    if isinstance(v, float):
        return "n/a" if math.isnan(v) else f"{v:.4g}"
    return "—" if v is None else str(v)


def _collect(obj: Any, prefix: str, rows: list, tables: list) -> None:
    """Split an optional section (inversion, attribute inference) into scalar rows and, for lists of
    records (per-class results), tables with one column per scalar field."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            _collect(v, f"{prefix}.{k}" if prefix else str(k), rows, tables)
    elif isinstance(obj, list) and obj and all(isinstance(v, dict) for v in obj):
        cols = list(dict.fromkeys(k for v in obj for k, x in v.items() if not isinstance(x, dict | list)))
        body = [[_text(v.get(c)) for c in cols] for v in obj[:MAX_SECTION_ROWS]]
        tables.append({"title": prefix, "columns": cols, "rows": body,
                       "truncated": max(len(obj) - MAX_SECTION_ROWS, 0)})
    elif isinstance(obj, list) and any(isinstance(v, list | dict) for v in obj):
        rows.append((prefix, f"array of {len(obj)} items (see results.json)"))
    elif isinstance(obj, list):
        rows.append((prefix, ", ".join(_text(v) for v in obj[:12]) + (" …" if len(obj) > 12 else "")))
    elif obj is not None:
        rows.append((prefix, _text(obj)))


def _embedded_image(name: Any, out_dir: Path | None) -> str | None:
    """A PNG written next to results.json, as a data URI; nothing outside ``out_dir`` is ever read."""
    if not isinstance(name, str) or not name.lower().endswith(".png") or out_dir is None:
        return None
    root = Path(out_dir).resolve()
    path = (root / name).resolve()
    if root not in path.parents or not path.is_file():
        return None
    return plots.data_uri(path.read_bytes())


def _section(evaluation: dict[str, Any], key: str, out_dir: Path | None) -> dict[str, Any] | None:
    part = evaluation.get(key)
    if not isinstance(part, dict) or not part:
        return None
    images = [uri for v in part.values() if (uri := _embedded_image(v, out_dir))]
    rows: list[tuple[str, str]] = []
    tables: list[dict[str, Any]] = []
    _collect(part, "", rows, tables)
    rows = [(k, v) for k, v in rows if not v.lower().endswith(".png")]
    # Headline numbers first (the attack's averages, then the baseline's), settings and details after.
    rows.sort(key=lambda kv: 0 if kv[0].startswith("average") else 1 if ".average" in kv[0] else 2)
    return {"id": str(evaluation.get("id")), "images": images, "rows": rows[:MAX_SECTION_ROWS],
            "truncated": max(len(rows) - MAX_SECTION_ROWS, 0), "tables": tables}


def _thumbs(dataset: Any, indices: list[int]) -> dict[int, str]:
    if dataset is None or getattr(dataset, "modality", None) != "image":
        return {}
    out = {}
    for i in indices:
        if 0 <= i < len(dataset.x):
            png = plots.thumbnail(dataset.x[i], getattr(dataset, "value_range", None))
            if png:
                out[i] = plots.data_uri(png)
    return out


def _scorecard(results: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for r in results.get("scorecard") or []:
        params = ", ".join(f"{k}={v}" for k, v in (r.get("params") or {}).items())
        rows.append({
            "id": str(r.get("id")), "defense": str(r.get("defense")), "params": params,
            "epsilon": num(r.get("epsilon"), 2) if r.get("epsilon") is not None else "—",
            "test_accuracy": pct(r.get("test_accuracy")), "accuracy_drop": pct(r.get("accuracy_drop")),
            "best_attack": str(r.get("best_attack")), "auc": num(r.get("auc")), "auc_ci": ci_text(r.get("auc_ci")),
            "tpr_low": pct(r.get("tpr_at_0.001"), 2), "tpr_low_ci": ci_text(r.get("tpr_at_0.001_ci"), as_pct=True),
            "tpr_main": pct(r.get("tpr_at_0.01")), "tpr_main_ci": ci_text(r.get("tpr_at_0.01_ci"), as_pct=True),
            "pareto": r.get("pareto") is True,
        })
    return rows


def build_context(results: dict[str, Any], scores: dict[str, np.ndarray], dataset: Any = None,
                  out_dir: Path | None = None) -> dict[str, Any]:
    ds = results.get("dataset") or {}
    spec = results.get("spec") or {}
    model = ((spec.get("target") or {}).get("model") or {}).get("name") if isinstance(spec, dict) else None
    v = verdict(results)
    sp = results.get("splits") or {}
    splits = {"members": sp["members"], "nonmembers": sp.get("nonmembers", "?")} if "members" in sp else None
    evaluations: list[dict[str, Any]] = []
    notes: dict[str, list[str]] = {}
    for ev in results.get("evaluations") or []:
        fpr_cols, rows = attack_rows(ev)
        curves, missing = _curves(ev, scores)
        target = ev.get("target") or {}
        evaluations.append({
            "id": str(ev.get("id")), "defense": defense_label(ev), "fpr_cols": fpr_cols, "rows": rows,
            "test_accuracy": pct(target.get("test_accuracy")), "train_accuracy": pct(target.get("train_accuracy")),
            "roc": plots.data_uri(plots.roc_plot(curves, f"ROC, log–log: {defense_label(ev)}")) if rows else None,
            "missing": missing, "knows_defense": ev.get("attacker_knows_defense"),
        })
        for a in ev.get("attacks") or []:
            for n in a.get("notes") or []:
                # The same caveat usually applies to every attack: say it once, naming them all.
                who = notes.setdefault(str(n), [])
                if str(a.get("name")) not in who:
                    who.append(str(a.get("name")))
    first = (results.get("evaluations") or [{}])[0]
    best = strongest_attack(first)
    histogram = None
    if best is not None:
        key = score_key(str(first.get("id")), str(best.get("name")))
        if key in scores and "is_member" in scores and len(scores[key]) == len(scores["is_member"]):
            histogram = plots.data_uri(plots.histogram_plot(scores[key], scores["is_member"],
                                                            f"{best.get('name')}: member vs non-member scores"))
    exposed = most_exposed(results, scores, labels=getattr(dataset, "y", None),
                           class_names=getattr(dataset, "class_names", None))
    thumbs = _thumbs(dataset, [e.index for e in exposed])
    scorecard = _scorecard(results)
    sections = {key: [s for ev in results.get("evaluations") or [] if (s := _section(ev, key, out_dir))]
                for key in ("inversion", "attribute_inference")}
    env = results.get("environment") or {}
    return {
        "title": f"{ds.get('name', 'dataset')} · {model or 'model'}",
        "dataset": {"name": str(ds.get("name", "n/a")), "modality": ds.get("modality"), "n_records": ds.get("n_records")},
        "model": model, "verdict": v, "splits": splits,
        "evaluations": evaluations, "notes": [f"{n} ({', '.join(who)})" for n, who in notes.items()], "best": best and str(best.get("name")),
        "histogram": histogram,
        "exposed": [{"rank": e.rank, "index": e.index, "score": num(e.score, 4), "label": e.label,
                     "above": pct(e.nonmembers_above), "thumb": thumbs.get(e.index)} for e in exposed],
        "has_images": bool(thumbs),
        "inversion": sections["inversion"], "attribute": sections["attribute_inference"],
        "scorecard": scorecard, "pareto": plots.data_uri(plots.pareto_plot(results["scorecard"])) if scorecard else None,
        "repro": {
            "command": results.get("command"), "spec_hash": results.get("spec_hash"), "seed": results.get("seed"),
            "runtime": f"{results['runtime_s']:.1f} s" if isinstance(results.get("runtime_s"), int | float) else None,
            "environment": [(str(k), str(val)) for k, val in env.items()],
            "schema_version": results.get("schema_version"),
            "spec": json.dumps(spec, indent=2, sort_keys=True, default=str) if spec else None,
        },
    }


def render_report(results: dict[str, Any], scores: dict[str, np.ndarray] | None = None, dataset: Any = None,
                  out_dir: Path | None = None) -> str:
    """The full page. ``out_dir`` lets images the pipeline wrote there (inversion grids) be embedded."""
    ctx = build_context(results, scores or {}, dataset, out_dir)
    return environment().get_template("report.html").render(**ctx)
