"""Reports: what a person reads after an audit. Plotting and formatting live only here.

``write_all`` is what ``cyphercat audit`` and ``cyphercat report OUT`` call; everything it needs is in
``results.json`` and ``scores.npz``, so a report can be rebuilt without rerunning anything.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from cyphercat.files import write_atomic

__all__ = ["write_all", "render_report", "render_summary"]


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
    write_atomic(html_path, render_report(results, scores or {}, dataset, out_dir).encode("utf-8"))
    write_atomic(md_path, render_summary(results).encode("utf-8"))
    return [html_path, md_path]

