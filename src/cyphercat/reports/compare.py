"""``cyphercat compare OUT1 OUT2 …``: the same attacks side by side across finished runs.

Rows are grouped by (evaluation, attack), one row per run, so a reader scans down a group to see how
one attack fared on each run; a run that did not have the attack gets an explicit "not run" row.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from cyphercat.errors import CyphercatError
from cyphercat.reports.verdict import (
    LOW_FPR,
    MAIN_FPR,
    ci_text,
    membership_attacks,
    num,
    pct,
    strongest_attack,
)
from cyphercat.results import load_results as _load


@dataclass(frozen=True)
class CompareRow:
    run: str
    spec_hash: str
    evaluation: str
    attack: str
    present: bool
    strongest: bool = False
    test_accuracy: float | None = None
    auc: float | None = None
    auc_ci: tuple[float, float] | None = None
    tpr_low: float | None = None  # TPR at 0.1% FPR
    tpr_low_ci: tuple[float, float] | None = None
    tpr_main: float | None = None  # TPR at 1% FPR
    tpr_main_ci: tuple[float, float] | None = None
    advantage: float | None = None

    def cells(self) -> list[str]:
        if not self.present:
            return [self.evaluation, self.attack, self.run, "not run", "", "", "", ""]
        return [self.evaluation, self.attack + (" *" if self.strongest else ""), self.run,
                pct(self.test_accuracy), f"{num(self.auc)} [{ci_text(self.auc_ci)}]",
                f"{pct(self.tpr_low, 2)} [{ci_text(self.tpr_low_ci, True)}]",
                f"{pct(self.tpr_main)} [{ci_text(self.tpr_main_ci, True)}]", num(self.advantage)]


HEADER = ["evaluation", "attack", "run", "test accuracy", "AUC [95% CI]", "TPR@0.1% FPR", "TPR@1% FPR", "advantage"]


def load_results(out_dir: Path) -> dict[str, Any]:
    return _load(out_dir, with_scores=False)[0]


def _labels(dirs: list[Path]) -> list[str]:
    names = [Path(d).resolve().name or str(d) for d in dirs]
    # Two runs called "run" in different folders must stay distinguishable.
    return [str(d) if names.count(n) > 1 else n for d, n in zip(dirs, names, strict=True)]


def _pair(ci: Any) -> tuple[float, float] | None:
    return (float(ci[0]), float(ci[1])) if isinstance(ci, list | tuple) and len(ci) == 2 else None


def compare_runs(dirs: list[Path]) -> list[CompareRow]:
    if not dirs:
        raise CyphercatError("compare", "no run directories given", "pass two or more OUT directories")
    runs = [(label, load_results(d)) for label, d in zip(_labels(list(dirs)), dirs, strict=True)]
    groups: list[tuple[str, str]] = []
    for _, res in runs:
        for ev in res["evaluations"]:
            for a in membership_attacks(ev):
                g = (str(ev.get("id")), str(a.get("name")))
                if g not in groups:
                    groups.append(g)
    rows = []
    for ev_id, name in groups:
        for label, res in runs:
            ev = next((e for e in res["evaluations"] if str(e.get("id")) == ev_id), None)
            attack = next((a for a in membership_attacks(ev) if str(a.get("name")) == name), None) if ev else None
            h = str(res.get("spec_hash", ""))
            if attack is None:
                rows.append(CompareRow(label, h, ev_id, name, present=False))
                continue
            tprs, cis = attack.get("tpr_at_fpr") or {}, attack.get("tpr_at_fpr_ci") or {}
            rows.append(CompareRow(
                label, h, ev_id, name, True, strongest=strongest_attack(ev) is attack,
                test_accuracy=(ev.get("target") or {}).get("test_accuracy"), auc=attack.get("auc"),
                auc_ci=_pair(attack.get("auc_ci")), tpr_low=tprs.get(LOW_FPR), tpr_low_ci=_pair(cis.get(LOW_FPR)),
                tpr_main=tprs.get(MAIN_FPR), tpr_main_ci=_pair(cis.get(MAIN_FPR)), advantage=attack.get("advantage"),
            ))
    return rows


def _cell(value: str, ci: str) -> Text:
    text = Text(value)
    if ci:
        text.append("\n" + ci, style="dim")  # CI on its own line keeps the table within 80 columns
    return text


def compare_table(rows: list[CompareRow]) -> Table:
    """Terminal view; the evaluation column appears only when the runs have more than one evaluation."""
    table = Table(title="Attacks across runs (* = strongest attack of that run; 95% CI below)",
                  title_justify="left", header_style="bold", box=box.SIMPLE_HEAD, pad_edge=False)
    several = len({r.evaluation for r in rows}) > 1
    header = (["evaluation"] if several else []) + ["attack", "run", "acc.", "AUC", "TPR@0.1%", "TPR@1%", "adv."]
    for h in header:
        table.add_column(h, justify="left" if h in ("evaluation", "attack", "run") else "right", no_wrap=True)
    for i, r in enumerate(rows):
        last = i + 1 == len(rows) or (rows[i + 1].evaluation, rows[i + 1].attack) != (r.evaluation, r.attack)
        lead = [Text(r.evaluation)] if several else []
        lead += [Text(r.attack + (" *" if r.strongest else "")), Text(r.run)]
        if not r.present:
            cells = [*lead, Text("not run"), *(Text("") for _ in range(4))]
        else:
            cells = [*lead, Text(pct(r.test_accuracy)), _cell(num(r.auc), ci_text(r.auc_ci)),
                     _cell(pct(r.tpr_low, 2), ci_text(r.tpr_low_ci, True)),
                     _cell(pct(r.tpr_main), ci_text(r.tpr_main_ci, True)), Text(num(r.advantage))]
        table.add_row(*cells, style="dim" if not r.present else None, end_section=last)
    return table


def print_compare(rows: list[CompareRow], console: Console | None = None) -> None:
    (console or Console()).print(compare_table(rows))


def compare_html(rows: list[CompareRow]) -> str:
    from cyphercat.reports.html import environment

    groups: list[dict[str, Any]] = []
    for r in rows:
        if not groups or (groups[-1]["evaluation"], groups[-1]["attack"]) != (r.evaluation, r.attack):
            groups.append({"evaluation": r.evaluation, "attack": r.attack, "rows": []})
        groups[-1]["rows"].append(r)
    runs = list(dict.fromkeys((r.run, r.spec_hash) for r in rows))
    return environment().get_template("compare.html").render(header=HEADER, groups=groups, runs=runs)
