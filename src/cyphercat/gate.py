"""The ``--fail-if`` CI gate: conditions on metric paths of a finished audit.

A condition reads ``[EVAL_ID:]PATH OP NUMBER``, e.g. ``lira_online.tpr_at_fpr.0.001 > 0.05`` or
``dp_sgd-epsilon=1:loss.auc >= 0.6``. PATH walks the evaluation (``evaluations[0]`` unless EVAL_ID is
given): its first part names an attack, ``target``, ``best`` (the strongest attack) or another section
such as ``inversion``. Keys may themselves contain dots (``0.001``), so each step takes the longest key
that matches. A condition that *holds* is a failure: the CLI writes every output first, then exits 3.

Parsing happens before the audit runs, so a malformed condition costs nothing (exit 2); names are
checked against the results, where the message can list what exists.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cyphercat.errors import CyphercatError

FIELD = "--fail-if"
OPERATORS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge, "<=": operator.le, "==": operator.eq, "!=": operator.ne, ">": operator.gt, "<": operator.lt,
}
# Two-character operators first, so ">=" is not read as ">" followed by "=0.5".
_OP_RE = re.compile(r"(>=|<=|==|!=|>|<)")
_PATH_RE = re.compile(r"^[A-Za-z_][\w\-]*(\.[\w\-.]+)?$")
_EXAMPLE = 'write it as PATH OP NUMBER, e.g. "lira_online.tpr_at_fpr.0.001 > 0.05" or "none:loss.auc >= 0.6"'


@dataclass(frozen=True)
class Condition:
    text: str
    evaluation: str | None
    path: str
    op: str
    value: float

    def holds(self, actual: float) -> bool:
        return OPERATORS[self.op](actual, self.value)


def parse_condition(text: str) -> Condition:
    raw = text.strip()
    if not raw:
        raise CyphercatError(FIELD, "empty condition", _EXAMPLE)
    # Evaluation ids may contain "=" (dp_sgd-epsilon=1) but never ":", so split the prefix off first.
    evaluation, rest = (raw.split(":", 1) if ":" in raw else (None, raw))
    if evaluation is not None:
        evaluation = evaluation.strip()
        if not evaluation:
            raise CyphercatError(FIELD, f"{raw!r} has an empty evaluation id before ':'", _EXAMPLE)
    # "=>", "=<" and a lone "=" are common slips; name the fix instead of misreading the path.
    if re.search(r"=>|=<|(?<![<>=!])=(?!=)", rest):
        raise CyphercatError(FIELD, f"{raw!r} uses '=', '=>' or '=<'", f"write ==, >= or <=; {_EXAMPLE}")
    parts = _OP_RE.split(rest)
    if len(parts) != 3:
        found = "no comparison operator" if len(parts) == 1 else "more than one comparison operator"
        raise CyphercatError(FIELD, f"{raw!r} has {found}", f"use one of {' '.join(OPERATORS)}; {_EXAMPLE}")
    path, op, number = (p.strip() for p in parts)
    if not _PATH_RE.match(path):
        raise CyphercatError(FIELD, f"{raw!r}: {path!r} is not a metric path",
                             f"start with an attack name, 'target' or 'best'; {_EXAMPLE}")
    try:
        value = float(number)
    except ValueError:
        raise CyphercatError(FIELD, f"{raw!r}: {number!r} is not a number",
                             f"put a plain number on the right (0.05, not 5%); {_EXAMPLE}") from None
    if not math.isfinite(value):
        raise CyphercatError(FIELD, f"{raw!r}: the threshold must be finite", _EXAMPLE)
    return Condition(text=raw, evaluation=evaluation, path=path, op=op, value=value)


def parse_conditions(texts: list[str] | tuple[str, ...] | None) -> list[Condition]:
    return [parse_condition(t) for t in texts or ()]


def _strongest(attacks: list[dict[str, Any]]) -> dict[str, Any] | None:
    # Same rule as the report: highest TPR at 1% FPR, ties broken by AUC.
    from cyphercat.reports.verdict import strongest_attack

    return strongest_attack({"attacks": attacks})


def _sections(evaluation: dict[str, Any]) -> dict[str, Any]:
    """The evaluation as one mapping: attacks by name, plus target, best and any other dict section."""
    attacks = [a for a in evaluation.get("attacks", []) if isinstance(a, dict)]
    out: dict[str, Any] = {k: v for k, v in evaluation.items() if isinstance(v, dict) and k != "defense"}
    for a in attacks:
        out[str(a.get("name"))] = a
    best = _strongest(attacks)
    if best is not None:
        out["best"] = best
    return out


def _walk(node: Any, rest: str, walked: str, cond: Condition, where: str) -> Any:
    if rest == "":
        return node
    if isinstance(node, list):
        keys = {str(i): v for i, v in enumerate(node)}
    elif isinstance(node, dict):
        keys = {str(k): v for k, v in node.items()}
    else:
        raise CyphercatError(FIELD, f"{cond.text!r}: {walked} is a number, it has no part {rest!r}",
                             f"end the path at {walked}")
    # Keys contain dots ("0.001"): take the longest key that is the whole rest or a dotted prefix of it.
    matches = [k for k in keys if rest == k or rest.startswith(k + ".")]
    if not matches:
        what = "attack or section" if not walked else "metric"
        listing = ", ".join(sorted(keys)) or "(nothing)"
        scope = f"{walked}" if walked else f"evaluation {where!r}"
        raise CyphercatError(FIELD, f"{cond.text!r}: no {what} {rest.split('.')[0]!r} in {scope}",
                             f"choose one of: {listing}")
    key = max(matches, key=len)
    return _walk(keys[key], rest[len(key) + 1:], f"{walked}.{key}" if walked else key, cond, where)


def _evaluation(results: dict[str, Any], cond: Condition) -> dict[str, Any]:
    evaluations = results.get("evaluations") or []
    if not evaluations:
        raise CyphercatError(FIELD, "the results have no evaluations to check", "run an audit with attacks")
    if cond.evaluation is None:
        return evaluations[0]
    for ev in evaluations:
        if str(ev.get("id")) == cond.evaluation:
            return ev
    ids = ", ".join(str(ev.get("id")) for ev in evaluations)
    raise CyphercatError(FIELD, f"{cond.text!r}: no evaluation {cond.evaluation!r}", f"choose one of: {ids}")


def resolve(results: dict[str, Any], cond: Condition) -> float:
    """The number a condition's path points at; a CyphercatError listing what exists otherwise."""
    ev = _evaluation(results, cond)
    value = _walk(_sections(ev), cond.path, "", cond, str(ev.get("id")))
    if isinstance(value, bool) or not isinstance(value, int | float):
        kind = type(value).__name__ if value is not None else "empty"
        hint = "add an index, e.g. auc_ci.0" if isinstance(value, list) else "point the path at a number"
        raise CyphercatError(FIELD, f"{cond.text!r}: {cond.path} is {kind}, not a number", hint)
    return float(value)


def check(results: dict[str, Any], conditions: list[Condition]) -> list[str]:
    """The conditions that hold (= the gate fails), each with the actual value.

    A metric that is NaN (undefined, e.g. AUC with no non-members) counts as failing: a CI gate that
    cannot measure must not pass silently.
    """
    failures = []
    for cond in conditions:
        actual = resolve(results, cond)
        if math.isnan(actual):
            failures.append(f"{cond.text} (actual value is NaN: the metric is undefined)")
        elif cond.holds(actual):
            failures.append(f"{cond.text} (actual {actual:.6g})")
    return failures
