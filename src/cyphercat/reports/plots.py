"""Every figure of the report, as PNG bytes ready to embed (matplotlib with the Agg backend, no display).

ROC curves are drawn on log–log axes because the question that matters is the low-FPR corner: an
attack that is confident about a few records is dangerous even when its AUC is close to 0.5.
"""

from __future__ import annotations

import base64
import io
import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg", force=False)
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from cyphercat.metrics import roc_curve  # noqa: E402

# Fixed metadata keeps the PNG bytes (and so the HTML) identical across reruns of the same results.
_PNG_META = {"Software": None}


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _png(fig: Figure, dpi: int = 110) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight", metadata=_PNG_META)
    plt.close(fig)
    return buf.getvalue()


def _finite(s: np.ndarray) -> np.ndarray:
    """±inf are legitimate extreme scores: move them just past the finite range so they still rank."""
    s = np.asarray(s, dtype=np.float64)
    fin = s[np.isfinite(s)]
    lo, hi = (float(fin.min()), float(fin.max())) if fin.size else (0.0, 0.0)
    span = (hi - lo) or 1.0
    return np.where(s == np.inf, hi + 0.05 * span, np.where(s == -np.inf, lo - 0.05 * span, np.nan_to_num(s, nan=lo)))


def roc_plot(curves: list[tuple[str, np.ndarray, np.ndarray]], title: str) -> bytes:
    """``curves``: (legend label, scores, is_member) per attack. Log–log ROC with the guessing diagonal."""
    fig, ax = plt.subplots(figsize=(5.6, 4.6))
    floor = 1.0
    for label, scores, member in curves:
        member = np.asarray(member, dtype=bool)
        fpr, tpr, _ = roc_curve(_finite(scores), member)
        n_neg = max(int((~member).sum()), 1)
        lo = 0.5 / n_neg  # FPR = 0 has no place on a log axis; pin it half a non-member below the first step
        floor = min(floor, lo)
        ax.step(np.maximum(fpr, lo), np.maximum(tpr, lo), where="post", label=label, linewidth=1.4)
    if not curves:
        floor = 1e-3
        ax.text(0.5, 0.5, "no per-sample scores", transform=ax.transAxes, ha="center")
    grid = np.logspace(math.log10(floor), 0, 50)
    ax.plot(grid, grid, linestyle="--", color="grey", linewidth=1, label="guessing")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(floor, 1)
    ax.set_ylim(floor, 1.05)
    for x in (0.001, 0.01):
        if x > floor:
            ax.axvline(x, color="#bbb", linewidth=0.7, zorder=0)
    ax.set_xlabel("false positive rate (non-members flagged)")
    ax.set_ylabel("true positive rate (members found)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(True, which="major", alpha=0.3)
    return _png(fig)


def histogram_plot(scores: np.ndarray, member: np.ndarray, title: str) -> bytes:
    s, member = _finite(scores), np.asarray(member, dtype=bool)
    fig, ax = plt.subplots(figsize=(5.6, 3.4))
    lo, hi = (float(s.min()), float(s.max())) if s.size else (0.0, 1.0)
    bins = np.linspace(lo, hi if hi > lo else lo + 1.0, 41)
    ax.hist(s[~member], bins=bins, alpha=0.6, label=f"non-members ({int((~member).sum())})", color="#4c72b0")
    ax.hist(s[member], bins=bins, alpha=0.6, label=f"members ({int(member.sum())})", color="#dd5555")
    ax.set_xlabel("attack score (higher = more likely a member)")
    ax.set_ylabel("records")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    return _png(fig)


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of points no other point beats on both axes (higher accuracy, lower leakage)."""
    front = []
    for i, (acc, leak) in enumerate(points):
        dominated = any(
            (a >= acc and lk <= leak) and (a > acc or lk < leak) for j, (a, lk) in enumerate(points) if j != i
        )
        if not dominated and not (math.isnan(acc) or math.isnan(leak)):
            front.append(i)
    return front


def pareto_plot(scorecard: list[dict[str, Any]]) -> bytes:
    """Test accuracy against the strongest attack's TPR at 1% FPR, one point per defense setting."""
    def val(row: dict[str, Any], key: str) -> float:
        v = row.get(key)
        return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else float("nan")

    pts = [(val(r, "test_accuracy"), val(r, "tpr_at_0.01")) for r in scorecard]
    given = [i for i, r in enumerate(scorecard) if r.get("pareto") is True]
    front = given if any("pareto" in r for r in scorecard) else pareto_front(pts)
    fig, ax = plt.subplots(figsize=(5.6, 4.2))
    for i, (row, (x, y)) in enumerate(zip(scorecard, pts, strict=True)):
        ci = row.get("tpr_at_0.01_ci")
        yerr = None
        if isinstance(ci, list | tuple) and len(ci) == 2:
            yerr = [[max(y - float(ci[0]), 0.0)], [max(float(ci[1]) - y, 0.0)]]
        on = i in front
        ax.errorbar([x], [y], yerr=yerr, fmt="o", color="#dd5555" if on else "#4c72b0", capsize=3,
                    markersize=6 if on else 4)
        ax.annotate(str(row.get("id", i)), (x, y), textcoords="offset points", xytext=(5, 4), fontsize=7)
    fr = sorted((pts[i] for i in front), key=lambda p: p[0])
    if len(fr) > 1:
        ax.plot([p[0] for p in fr], [p[1] for p in fr], color="#dd5555", linewidth=1, label="Pareto front")
        ax.legend(fontsize=8)
    ax.set_xlabel("target test accuracy (higher is better)")
    ax.set_ylabel("strongest attack: TPR at 1% FPR (lower is better)")
    ax.set_title("privacy–utility trade-off", fontsize=10)
    ax.grid(True, alpha=0.3)
    return _png(fig)


def thumbnail(x: np.ndarray, value_range: tuple[float, float] | None) -> bytes | None:
    """One record as a small PNG: H×W, 1×H×W or 3×H×W (or H×W×3) scaled from ``value_range``."""
    img = np.asarray(x, dtype=np.float64)
    if img.ndim == 3 and img.shape[0] in (1, 3, 4):
        img = np.moveaxis(img, 0, -1)
    if img.ndim == 3 and img.shape[-1] == 1:
        img = img[..., 0]
    if img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[-1] not in (3, 4)):
        return None
    lo, hi = value_range if value_range else (float(np.nanmin(img)), float(np.nanmax(img)))
    img = np.clip((img - lo) / ((hi - lo) or 1.0), 0.0, 1.0)
    buf = io.BytesIO()
    plt.imsave(buf, img, cmap="gray" if img.ndim == 2 else None, vmin=0.0, vmax=1.0, format="png",
               metadata=_PNG_META)
    return buf.getvalue()


def _display(x: np.ndarray) -> np.ndarray:
    """One record -> a 2-D picture: grey images as is, RGB as H×W×3, other records as a 1×F strip."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 3 and x.shape[0] == 3:
        return np.transpose(x, (1, 2, 0))
    if x.ndim >= 2:
        return x.reshape(-1, *x.shape[-2:])[0]
    return x[None, :]


def save_inversion_grid(path: Path, rows: list[tuple[int, list[np.ndarray | None]]], columns: list[str],
              value_range: tuple[float, float]) -> None:
    """Model-inversion pictures: one row per class, one column per picture kind (no pyplot state)."""
    lo, hi = value_range
    fig = Figure(figsize=(1.6 * len(columns), 1.4 * len(rows) + 0.4))
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(rows), len(columns), squeeze=False)
    for r, (label, pictures) in enumerate(rows):
        for c, pic in enumerate(pictures):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if pic is not None:
                img = np.clip((_display(pic) - lo) / (hi - lo), 0, 1)
                # Reconstructions use a fraction of the valid range; stretching each picture to its own
                # range (as in the paper's figures) lets a person compare shapes, not brightness.
                span = img.max() - img.min()
                img = (img - img.min()) / span if span > 1e-6 else img
                ax.imshow(img, cmap="gray", vmin=0, vmax=1, interpolation="nearest", aspect="auto")
            if r == 0:
                ax.set_title(columns[c], fontsize=8)
            if c == 0:
                ax.set_ylabel(f"class {label}", fontsize=8)
    fig.suptitle("each picture stretched to its own value range", fontsize=7)
    fig.tight_layout(rect=(0, 0, 1, 0.985))
    fig.savefig(path, dpi=100)
