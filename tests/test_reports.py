"""Reports: HTML, Markdown, terminal table, compare, progress. Built on a fabricated audit whose leakage
is known by construction: ``lira_online`` exposes a tenth of the members, ``loss`` shifts every member a
little, and ``confidence`` sees nothing.
"""

from __future__ import annotations

import html as html_lib
import io
import json
import logging
import re
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from cyphercat.data.builtin import digits
from cyphercat.errors import CyphercatError
from cyphercat.metrics import evaluate
from cyphercat.progress import Progress, get_progress, set_progress, setup_logging
from cyphercat.reports import plots, render_report, write_all
from cyphercat.reports.compare import compare_html, compare_runs, print_compare
from cyphercat.reports.markdown import md_escape, render_summary
from cyphercat.reports.plots import pareto_front
from cyphercat.reports.terminal import print_results
from cyphercat.reports.verdict import most_exposed, strongest_attack, verdict

N = 300  # members and non-members each: enough non-members for a meaningful 1% FPR
EXPOSED = 30  # lira_online's exposed members (10%)


def _attack_entry(name: str, scores: np.ndarray, member: np.ndarray, seed: int) -> dict:
    m = evaluate(scores, member, threshold=float(np.median(scores)), bootstrap=60, rng=np.random.default_rng(seed))
    return {"name": name, "kind": "membership", "observes": "scores", "auc": m.auc, "auc_ci": list(m.auc_ci),
            "tpr_at_fpr": m.tpr_at_fpr, "tpr_at_fpr_ci": {k: list(v) for k, v in m.tpr_at_fpr_ci.items()},
            "advantage": m.advantage, "advantage_at_threshold": m.advantage_at_threshold,
            "precision": m.precision, "recall": m.recall, "threshold": m.threshold,
            "epsilon_lower_bound": m.epsilon_lower_bound, "n_members": m.n_members, "n_nonmembers": m.n_nonmembers,
            "lowest_measurable_fpr": m.lowest_measurable_fpr, "notes": m.notes, "details": {}, "runtime_s": 0.1}


def fabricate(seed: int = 0, dataset_name: str = "digits", defenses: bool = True,
              strength: float = 1.0) -> tuple[dict, dict[str, np.ndarray]]:
    """A results dict shaped like results.json plus matching scores.npz arrays."""
    rng = np.random.default_rng(seed)
    candidates = rng.permutation(1797)[: 2 * N].astype(np.int64)
    member = np.r_[np.ones(N, bool), np.zeros(N, bool)]
    scores: dict[str, np.ndarray] = {"candidates": candidates, "is_member": member}
    evaluations, scorecard = [], []
    settings = [("none", {"name": "none", "params": {}, "stage": None, "epsilon": None}, strength, 0.93)]
    if defenses:
        settings += [("dp_sgd-epsilon=1", {"name": "dp_sgd", "params": {"epsilon": 1}, "stage": "training",
                                           "epsilon": 0.98}, 0.0, 0.85),
                     ("label_smoothing-0.1", {"name": "label_smoothing", "params": {"smoothing": 0.1},
                                              "stage": "training", "epsilon": None}, 0.5 * strength, 0.80)]
    for k, (eid, defense, s, acc) in enumerate(settings):
        lira = rng.normal(size=2 * N)
        lira[:EXPOSED] += 8.0 * s  # a tenth of members are memorised outliers
        loss = rng.normal(size=2 * N) + 0.5 * s * member
        conf = rng.normal(size=2 * N)
        attacks = []
        for j, (name, sc) in enumerate((("lira_online", lira), ("loss", loss), ("confidence", conf))):
            scores[f"{eid}/{name}"] = sc
            attacks.append(_attack_entry(name, sc, member, seed + 10 * k + j))
        ev = {"id": eid, "defense": defense, "attacker_knows_defense": True,
              "target": {"train_accuracy": 1.0, "test_accuracy": acc}, "attacks": attacks}
        evaluations.append(ev)
        best = strongest_attack(ev)
        scorecard.append({"id": eid, "defense": defense["name"], "params": defense["params"],
                          "epsilon": defense["epsilon"], "test_accuracy": acc, "accuracy_drop": 0.93 - acc,
                          "best_attack": best["name"], "auc": best["auc"], "auc_ci": best["auc_ci"],
                          "tpr_at_0.001": best["tpr_at_fpr"]["0.001"],
                          "tpr_at_0.001_ci": best["tpr_at_fpr_ci"]["0.001"],
                          "tpr_at_0.01": best["tpr_at_fpr"]["0.01"], "tpr_at_0.01_ci": best["tpr_at_fpr_ci"]["0.01"]})
    if defenses:
        front = pareto_front([(r["test_accuracy"], r["tpr_at_0.01"]) for r in scorecard])
        for i, r in enumerate(scorecard):
            r["pareto"] = i in front
    spec = {"seed": seed, "dataset": {"name": dataset_name, "params": {}},
            "target": {"model": {"name": "mlp", "params": {"hidden": [512]}}}}
    results = {
        "schema_version": 1, "spec_hash": "3f2a9c0d11aa22bb", "spec": spec, "seed": seed,
        "command": "cyphercat audit examples/digits.yaml --out runs/x",
        "environment": {"python": "3.11.7", "torch": "2.13.0", "numpy": "2.1", "cyphercat": "0.2.0",
                        "device": "cpu", "platform": "linux"},
        "runtime_s": 12.3,
        "dataset": {"name": dataset_name, "modality": "image", "num_classes": 10, "input_shape": [1, 8, 8],
                    "n_records": 1797},
        "splits": {"members": N, "nonmembers": N, "shadow_in": 300, "shadow_out": 300, "validation": 0,
                   "population": 597},
        "evaluations": evaluations,
    }
    if defenses:
        results["scorecard"] = scorecard
    return results, scores


@pytest.fixture(scope="module")
def run():
    return fabricate()


@pytest.fixture(scope="module")
def ds():
    return digits()


def test_strongest_attack_and_verdict_follow_the_leakage(run):
    results, _ = run
    ev = results["evaluations"][0]
    assert strongest_attack(ev)["name"] == "lira_online"
    v = verdict(results)
    assert v.attack == "lira_online"
    # 30 of 300 members sit 8σ out: the attacker finds about 10% of them at 1% false alarms.
    assert 0.09 <= v.tpr_main <= 0.2
    assert v.leaks is True
    assert re.match(r"An attacker identifies \d+\.\d% of training records with 1% false alarms", v.headline)
    assert "93.0%" in v.sentences[0]


def test_verdict_says_guessing_when_nothing_leaks():
    results, _ = fabricate(seed=3, defenses=False, strength=0.0)
    v = verdict(results)
    assert v.leaks is False
    assert any("not distinguishable from guessing" in s for s in v.sentences)


def test_most_exposed_are_the_planted_outliers(run, ds):
    results, scores = run
    top = most_exposed(results, scores, k=20, labels=ds.y, class_names=ds.class_names)
    assert len(top) == 20
    planted = set(scores["candidates"][:EXPOSED].tolist())
    assert {e.index for e in top} <= planted
    assert [e.rank for e in top] == list(range(1, 21))
    assert all(e.score >= top[-1].score for e in top)
    assert top[0].label == str(ds.y[top[0].index])
    assert top[0].nonmembers_above == 0.0  # 8σ above every non-member


def test_report_has_every_section(run, ds, tmp_path):
    results, scores = run
    (tmp_path / "inversion.png").write_bytes(_tiny_png())
    results = json.loads(json.dumps(results))  # what results.json round-trips to
    results["evaluations"][0]["inversion"] = {"image": "inversion.png", "average": {"mse": 0.041, "ssim": 0.52},
                                              "per_class": [{"class": 0, "mse": 0.03}]}
    results["evaluations"][0]["attribute_inference"] = {"attribute": "feature 3", "members_accuracy": 0.71,
                                                        "nonmembers_accuracy": 0.64, "prior_accuracy": 0.6}
    page = render_report(results, scores, ds, out_dir=tmp_path)
    assert "An attacker identifies" in page and "with 1% false alarms" in page
    assert page.count('class="roc"') == 3  # one ROC per evaluation
    assert 'class="histogram"' in page
    assert page.count("<table class=\"attacks\">") == 3
    for col in ("AUC", "TPR at 0.1% FPR", "TPR at 1% FPR", "advantage", "precision", "recall"):
        assert col in page
    assert 'id="exposed"' in page and page.count('class="thumb"') == 20
    assert "Model inversion" in page and "average.ssim" in page and "Attribute inference" in page
    assert '<table class="records"><caption>per_class</caption>' in page  # per-class records as a table
    assert "members_accuracy" in page
    assert 'id="defenses"' in page and "Pareto" in page
    assert "3f2a9c0d11aa22bb" in page and "cyphercat audit examples/digits.yaml --out runs/x" in page
    assert "2.13.0" in page and "12.3 s" in page
    # Self-contained: every image is inline, nothing points at the network, no scripts.
    srcs = re.findall(r'(?:src|href)\s*=\s*"([^"]*)"', page)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert not re.search(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", page)
    assert "<script" not in page.lower() and "@import" not in page and "url(" not in page


def test_inversion_image_outside_out_dir_is_not_read(run, tmp_path):
    results, scores = run
    results = json.loads(json.dumps(results))
    outside = tmp_path / "secret.png"
    outside.write_bytes(_tiny_png())
    (tmp_path / "out").mkdir()
    results["evaluations"][0]["inversion"] = {"image": "../secret.png", "average": {"mse": 0.1}}
    page = render_report(results, scores, None, out_dir=tmp_path / "out")
    assert "Model inversion" in page and "mse" in page
    secret = plots.data_uri(outside.read_bytes())
    assert secret not in page and page.count("data:image/png") == 5  # 3 ROC + histogram + Pareto


def test_user_strings_are_escaped(tmp_path):
    evil = '<script>alert("x")</script>'
    results, scores = fabricate(dataset_name=evil, defenses=False)
    results["evaluations"][0]["attacks"][1]["name"] = "<img src=x onerror=alert(1)>"
    results["command"] = f"cyphercat audit --dataset '{evil}'"
    paths = write_all(tmp_path, results, scores)
    page = (tmp_path / "report.html").read_text()
    assert evil not in page and "<script" not in page.lower()
    assert html_lib.escape(evil, quote=False).replace('"', "&#34;") in page or "&lt;script&gt;" in page
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    md = (tmp_path / "summary.md").read_text()
    assert "<script" not in md and "&lt;script&gt;" in md
    assert sorted(p.name for p in paths) == ["report.html", "summary.md"]


def test_markdown_summary(run):
    results, _ = run
    md = render_summary(results)
    lines = md.splitlines()
    assert lines[0].startswith("## Privacy audit: digits")
    assert any(line.startswith("**An attacker identifies") for line in lines)
    table = [line for line in lines if line.startswith("| ")]
    header = table[0]
    assert "TPR at 0.1% FPR" in header and "TPR at 1% FPR" in header and "AUC (95% CI)" in header
    assert any("**lira\\_online**" in line for line in table)  # strongest in bold
    n_cols = header.count("|")
    assert all(line.count("|") == n_cols for line in table[:4])
    assert "### Defenses" in md
    assert md_escape("a|b") == "a\\|b" and md_escape("x\ny") == "x y"


def test_terminal_table(run):
    results, _ = run
    buf = io.StringIO()
    print_results(results, Console(file=buf, width=200, color_system=None))
    out = buf.getvalue()
    assert len(re.findall(r"\w \*", out)) == 3  # one strongest attack per evaluation
    first = out.split("dp_sgd-epsilon=1")[0]
    assert "lira_online *" in first and "confidence *" not in first
    assert "dp_sgd-epsilon=1" in out and "An attacker identifies" in out
    assert "TPR@0.1%" in out and "recall" in out and "0.0%–" in out  # CIs shown


def test_terminal_table_fits_80_columns(run):
    results, _ = run
    buf = io.StringIO()
    print_results(results, Console(file=buf, width=80, color_system=None))
    out = buf.getvalue()
    assert "…" not in out and "lira_online *" in out and "recall" not in out
    assert max(len(line) for line in out.splitlines()) <= 80


def test_terminal_does_not_interpret_markup(run):
    results, _ = run
    results = json.loads(json.dumps(results))
    results["evaluations"][0]["attacks"][2]["name"] = "[bold]conf[/bold]"
    buf = io.StringIO()
    print_results(results, Console(file=buf, width=200, color_system=None))
    assert "[bold]conf[/bold]" in buf.getvalue()


def _write_run(path: Path, results: dict) -> Path:
    path.mkdir(parents=True)
    (path / "results.json").write_text(json.dumps(results))
    return path


def test_compare_runs(tmp_path):
    a, _ = fabricate(seed=0, defenses=False)
    b, _ = fabricate(seed=1, defenses=False, strength=0.0)
    b["evaluations"][0]["attacks"] = b["evaluations"][0]["attacks"][:2]  # run b has no confidence attack
    rows = compare_runs([_write_run(tmp_path / "a", a), _write_run(tmp_path / "b", b)])
    assert [(r.attack, r.run) for r in rows] == [("lira_online", "a"), ("lira_online", "b"), ("loss", "a"),
                                                 ("loss", "b"), ("confidence", "a"), ("confidence", "b")]
    assert rows[-1].present is False and rows[-2].present is True
    assert rows[0].tpr_main > rows[1].tpr_main  # leaky run vs clean run
    buf = io.StringIO()
    print_compare(rows, Console(file=buf, width=80, color_system=None))
    out = buf.getvalue()
    assert "not run" in out and "TPR@1%" in out and "lira_online *" in out
    assert "…" not in out and max(len(line) for line in out.splitlines()) <= 80
    page = compare_html(rows)
    assert page.count('<tbody class="group">') == 3 and "not run" in page
    assert "<script" not in page and not re.search(r"(?:src|href)=", page)


def test_compare_rejects_a_directory_without_results(tmp_path):
    with pytest.raises(CyphercatError, match="results.json: no results here"):
        compare_runs([tmp_path])
    (tmp_path / "results.json").write_text("{not json")
    with pytest.raises(CyphercatError, match="not valid JSON"):
        compare_runs([tmp_path])


def test_same_names_in_different_folders_stay_apart(tmp_path):
    a, _ = fabricate(defenses=False)
    rows = compare_runs([_write_run(tmp_path / "x" / "run", a), _write_run(tmp_path / "y" / "run", a)])
    assert len({r.run for r in rows}) == 2


def test_pareto_front():
    pts = [(0.9, 0.2), (0.8, 0.1), (0.7, 0.15), (0.95, 0.3), (0.8, 0.2)]
    assert pareto_front(pts) == [0, 1, 3]


def test_progress_quiet_is_silent_and_default(capsys):
    assert get_progress().quiet
    with Progress(quiet=True) as p:
        h = p.task("x", total=3)
        h.advance()
        assert list(p.track([1, 2, 3], "items")) == [1, 2, 3]
    assert capsys.readouterr() == ("", "")


def test_progress_reports_through_get_progress():
    buf = io.StringIO()
    console = Console(file=buf, width=100, force_terminal=False)
    with Progress(console=console) as p:
        assert get_progress() is p
        overall = get_progress().task("training models", total=2)
        for _ in range(2):
            with get_progress().task("model", total=5, transient=True) as bar:
                for _ in range(5):
                    bar.advance()
            overall.advance()
        assert list(get_progress().track(range(4), "signals")) == [0, 1, 2, 3]
        rich_tasks = p._rich.tasks
        assert [t.description for t in rich_tasks] == ["training models"]  # transient bars removed
        assert rich_tasks[0].completed == 2
    assert get_progress().quiet
    assert "training models" in buf.getvalue()
    previous = set_progress(p)
    assert get_progress() is p
    set_progress(previous)


def test_setup_logging_levels_and_no_duplicate_handlers():
    logger = setup_logging(quiet=True)
    assert logger.level == logging.WARNING
    logger = setup_logging(verbose=True)
    assert logger.level == logging.DEBUG
    assert sum(getattr(h, "_cyphercat", False) for h in logger.handlers) == 1
    setup_logging()
    assert logger.level == logging.INFO


def _tiny_png() -> bytes:
    from cyphercat.reports.plots import thumbnail

    return thumbnail(np.eye(4, dtype=np.float32), (0.0, 1.0))
