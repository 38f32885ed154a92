"""Reports: what a person reads after an audit. Plotting and formatting live only here.

``write_all`` is what ``cyphercat audit`` and ``cyphercat report OUT`` call; everything it needs is in
``results.json`` and ``scores.npz``, so a report can be rebuilt without rerunning anything.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["write_all", "render_report", "render_summary"]


def _atomic_write(path: Path, text: str) -> None:
    # A report half-written by a killed run must never look complete. (Not mkstemp: its 0600 mode would
    # make the report unreadable to the team sharing a runs folder.)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def render_report(results: dict[str, Any], scores: dict[str, np.ndarray] | None = None, dataset: Any = None,
                  out_dir: Path | None = None) -> str:
    from cyphercat.reports.html import render_report as _render

    return _render(results, scores, dataset, out_dir)


def render_summary(results: dict[str, Any]) -> str:
    from cyphercat.reports.markdown import render_summary as _render

    return _render(results)


def write_all(out_dir: Path, results: dict[str, Any], scores: dict[str, np.ndarray] | None = None,
              dataset: Any = None) -> list[Path]:
    """Write ``report.html`` and ``summary.md`` into ``out_dir``; returns their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    html_path, md_path = out_dir / "report.html", out_dir / "summary.md"
    _atomic_write(html_path, render_report(results, scores or {}, dataset, out_dir))
    _atomic_write(md_path, render_summary(results))
    return [html_path, md_path]

