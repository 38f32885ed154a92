"""The results table a person sees at the end of ``cyphercat audit`` (rich).

Cells are ``rich.text.Text`` objects, never markup strings, so a name like ``[bold]x`` prints as is.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from cyphercat.reports.html import attack_rows, defense_label
from cyphercat.reports.verdict import verdict


def results_tables(results: dict[str, Any]) -> list[Table]:
    tables = []
    for ev in results.get("evaluations") or []:
        fpr_cols, rows = attack_rows(ev)
        target = ev.get("target") or {}
        acc = target.get("test_accuracy")
        title = Text(f"{ev.get('id')}: {defense_label(ev)}")
        if isinstance(acc, int | float):
            title.append(f"  (test accuracy {100 * acc:.1f}%)")
        table = Table(title=title, title_justify="left", header_style="bold")
        table.add_column("attack")
        table.add_column("AUC [95% CI]", justify="right")
        for f in fpr_cols:
            table.add_column(f"TPR@{f} FPR", justify="right")
        for col in ("adv.", "prec.", "recall"):
            table.add_column(col, justify="right")
        for r in rows:
            style = "bold red" if r["strongest"] else None
            auc = f"{r['auc']} [{r['auc_ci']}]" if r["auc_ci"] else r["auc"]
            tprs = [f"{t['value']} [{t['ci']}]" if t["ci"] else t["value"] for t in r["tprs"]]
            cells = [r["name"] + (" *" if r["strongest"] else ""), auc, *tprs, r["advantage"], r["precision"], r["recall"]]
            table.add_row(*(Text(c) for c in cells), style=style)
        if not rows:
            table.add_row(Text("no membership attacks"), *(Text("") for _ in range(len(fpr_cols) + 4)))
        tables.append(table)
    return tables


def print_results(results: dict[str, Any], console: Console | None = None) -> None:
    """One table per evaluation, then the verdict (the strongest attack is starred)."""
    console = console or Console()
    for table in results_tables(results):
        console.print(table)
    v = verdict(results)
    console.print(Text(v.headline, style="bold"))
    for s in v.sentences:
        console.print(Text(s))
    for n in v.notes:
        console.print(Text(n, style="dim"))
