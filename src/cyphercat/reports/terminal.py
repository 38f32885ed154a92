"""The results table a person sees at the end of ``cyphercat audit`` (rich).

Cells are ``rich.text.Text`` objects, never markup strings, so a name like ``[bold]x`` prints as is.
"""

from __future__ import annotations

from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from cyphercat.reports.html import attack_rows, defense_label
from cyphercat.reports.verdict import verdict


def _cell(value: str, ci: str) -> Text:
    # The CI goes on a second, dim line so the table stays narrow enough for an 80-column terminal.
    text = Text(value)
    if ci:
        text.append("\n" + ci, style="dim")
    return text


def results_tables(results: dict[str, Any], width: int = 120) -> list[Table]:
    """One table per evaluation; below 100 columns precision and recall are left to the HTML report."""
    tables = []
    wide = width >= 100
    for ev in results.get("evaluations") or []:
        fpr_cols, rows = attack_rows(ev)
        target = ev.get("target") or {}
        acc = target.get("test_accuracy")
        title = Text(f"{ev.get('id')}: {defense_label(ev)}")
        if isinstance(acc, int | float):
            title.append(f"  (test accuracy {100 * acc:.1f}%)")
        table = Table(title=title, title_justify="left", header_style="bold", box=box.SIMPLE_HEAD)
        table.add_column("attack", no_wrap=True)
        table.add_column("AUC", justify="right", no_wrap=True)
        for f in fpr_cols:
            table.add_column(f"TPR@{f}", justify="right", no_wrap=True)
        extra = ("adv.", "prec.", "recall") if wide else ("adv.",)
        for col in extra:
            table.add_column(col, justify="right", no_wrap=True)
        for r in rows:
            cells = [Text(r["name"] + (" *" if r["strongest"] else "")), _cell(r["auc"], r["auc_ci"])]
            cells += [_cell(t["value"], t["ci"]) for t in r["tprs"]]
            cells += [Text(r["advantage"])] + ([Text(r["precision"]), Text(r["recall"])] if wide else [])
            table.add_row(*cells, style="bold red" if r["strongest"] else None)
        if not rows:
            table.add_row(Text("no membership attacks"), *(Text("") for _ in range(len(fpr_cols) + len(extra))))
        table.caption = Text("TPR@x: members found at x false alarms; 95% CI below; * strongest")
        table.caption_justify = "left"
        tables.append(table)
    return tables


def print_results(results: dict[str, Any], console: Console | None = None) -> None:
    """One table per evaluation, then the verdict (the strongest attack is starred)."""
    console = console or Console()
    for table in results_tables(results, console.width):
        console.print(table)
    v = verdict(results)
    console.print(Text(v.headline, style="bold"))
    for s in v.sentences:
        console.print(Text(s))
    for n in v.notes:
        console.print(Text(n, style="dim"))
