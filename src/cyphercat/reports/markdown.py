"""``summary.md``: the verdict and the attack table, small enough for a pull-request comment or a model card.

Markdown renderers (GitHub included) pass raw HTML through, so user strings are HTML-escaped and the
characters that would break a table or start formatting are backslash-escaped.
"""

from __future__ import annotations

import html
import re
from typing import Any

from cyphercat.reports.html import attack_rows
from cyphercat.reports.verdict import ci_text, num, pct, verdict

# Inline markers escaped everywhere; block markers (#, -, +, "1.") only matter at the start of a line.
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]|~])")
_MD_LINE_START = re.compile(r"^(\s*)([#+\-]|\d+\.)")


def md_escape(text: Any) -> str:
    """Safe inside a table cell or a sentence: no HTML, no formatting, no column breaks, one line."""
    s = html.escape(str(text), quote=False).replace("\r", " ").replace("\n", " ")
    s = _MD_SPECIAL.sub(r"\\\1", s)
    return _MD_LINE_START.sub(lambda m: m.group(1) + (m.group(2)[:-1] + "\\." if m.group(2).endswith(".")
                                                     else "\\" + m.group(2)), s)


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


def render_summary(results: dict[str, Any]) -> str:
    v = verdict(results)
    ds = (results.get("dataset") or {}).get("name", "dataset")
    spec = results.get("spec") or {}
    model = ((spec.get("target") or {}).get("model") or {}).get("name", "model") if isinstance(spec, dict) else "model"
    lines = [f"## Privacy audit: {md_escape(ds)} · {md_escape(model)}", "", f"**{md_escape(v.headline)}**", ""]
    lines += [md_escape(s) for s in v.sentences] + [""]
    lines += [f"_{md_escape(n)}_" for n in v.notes] + ([""] if v.notes else [])
    evaluations = results.get("evaluations") or []
    if evaluations:
        fpr_cols, rows = attack_rows(evaluations[0])
        header = ["attack", "AUC (95% CI)"] + [f"TPR at {f} FPR" for f in fpr_cols] + ["advantage", "precision", "recall"]
        body = []
        for r in rows:
            name = f"**{md_escape(r['name'])}**" if r["strongest"] else md_escape(r["name"])
            auc = f"{r['auc']} ({r['auc_ci']})" if r["auc_ci"] else r["auc"]
            tprs = [f"{t['value']} ({t['ci']})" if t["ci"] else t["value"] for t in r["tprs"]]
            body.append([name, auc, *tprs, r["advantage"], r["precision"], r["recall"]])
        if body:
            lines += _table(header, body) + [""]
    card = results.get("scorecard") or []
    if card:
        lines += ["### Defenses", ""]
        body = [[md_escape(r.get("id")), pct(r.get("test_accuracy")), md_escape(r.get("best_attack")),
                 f"{num(r.get('auc'))} ({ci_text(r.get('auc_ci'))})", pct(r.get("tpr_at_0.01")),
                 "yes" if r.get("pareto") else ""] for r in card]
        lines += _table(["evaluation", "test accuracy", "strongest attack", "AUC", "TPR at 1% FPR", "Pareto"], body)
        lines.append("")
    tail = []
    if results.get("spec_hash"):
        tail.append(f"spec hash {md_escape(results['spec_hash'])}")
    if results.get("seed") is not None:
        tail.append(f"seed {md_escape(results['seed'])}")
    version = (results.get("environment") or {}).get("cyphercat")
    if version:
        tail.append(f"cyphercat {md_escape(version)}")
    if tail:
        lines.append("<sub>" + ", ".join(tail) + "</sub>")
    return "\n".join(lines).rstrip() + "\n"
