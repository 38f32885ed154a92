"""Every bad input ends in one line ``error: FIELD: PROBLEM -> FIX`` on stderr and exit code 2.

One row per kind of mistake, across spec, data, models, attacks/defenses, cache and CLI flags; the
same table is in docs/errors.md (a test keeps the two in step). Every row fails before any training.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import re
from pathlib import Path

import pytest
import torch

from cyphercat.cli import main

DOCS = Path(__file__).resolve().parents[1] / "docs" / "errors.md"
OK = "seed: 0\nreference_models: 2\n"


def spec(text: str) -> dict:
    return {"spec.yaml": text}


# id, files written into a temp dir ({dir} in argv), argv, expected stderr line (a regex from the start)
CASES = [
    # ---- spec files
    ("spec-missing", {}, ["audit", "{dir}/nope.yaml"],
     r"error: spec: file '.*nope.yaml' does not exist -> give the path of a YAML spec$"),
    ("spec-not-utf8", {"spec.yaml": b"seed: \xff\xfe\n"}, ["audit", "{dir}/spec.yaml"],
     r"error: spec: cannot read '.*spec.yaml': .* -> give a readable UTF-8 YAML file$"),
    ("spec-malformed-yaml", spec("seed: [1\n"), ["audit", "{dir}/spec.yaml"],
     r"error: spec: malformed YAML in spec.yaml at line \d+, column \d+: .* -> fix the YAML syntax"),
    ("spec-not-a-mapping", spec("- seed\n- 1\n"), ["audit", "{dir}/spec.yaml"],
     r"error: spec: expected a mapping at the top level, got list -> write the spec as `key: value` lines"),
    ("spec-unknown-field", spec("sed: 1\n"), ["audit", "{dir}/spec.yaml"],
     r"error: sed: unknown spec field -> remove it or check its spelling"),
    ("spec-negative-seed", spec("seed: -1\n"), ["audit", "{dir}/spec.yaml"],
     r"error: seed: Input should be greater than or equal to 0 -> fix this field of the spec$"),
    ("spec-zero-epochs", spec("target: {training: {epochs: 0}}\n"), ["audit", "{dir}/spec.yaml"],
     r"error: target.training.epochs: Input should be greater than or equal to 1 -> fix this field"),
    ("spec-nan-learning-rate", spec("target: {training: {lr: .nan}}\n"), ["audit", "{dir}/spec.yaml"],
     r"error: target.training.lr: nan is not a finite number -> use a finite number$"),
    ("spec-unknown-optimizer", spec("target: {training: {optimizer: rmsprop}}\n"), ["audit", "{dir}/spec.yaml"],
     r"error: target.training.optimizer: Input should be 'adam', 'adamw' or 'sgd' -> fix this field"),
    ("spec-attack-twice", spec("attacks: [loss, loss]\n"), ["audit", "{dir}/spec.yaml"],
     r"error: attacks\[1\]: attack 'loss' is listed twice -> list it once$"),
    # ---- data
    ("data-unknown-dataset", spec("dataset: mnsit\n"), ["audit", "{dir}/spec.yaml"],
     r"error: dataset.name: unknown dataset 'mnsit' -> did you mean 'mnist'\? choose one of: "),
    ("data-unknown-parameter", spec("dataset: {name: digits, params: {colour: true}}\n"),
     ["audit", "{dir}/spec.yaml", "--out", "{dir}/out"],
     r"error: dataset.params: digits: .*unexpected keyword argument 'colour' -> remove the parameter"),
    ("data-bad-parameter-value", spec("dataset: {name: synthetic, params: {n_features: 5, n_informative: 10}}\n"),
     ["audit", "{dir}/spec.yaml", "--out", "{dir}/out"],
     r"error: dataset.params.n_informative: 10 > n_features=5 -> make n_informative at most n_features$"),
    ("data-files-missing", spec("dataset: mnist\n"), ["audit", "{dir}/spec.yaml", "--data-dir", "{dir}/data"],
     r"error: dataset.data_dir: mnist files not found in .*data/mnist -> put train-images-idx3-ubyte.gz, "),
    ("data-splits-too-large", spec(OK + "splits: {target_members: 5000}\n"),
     ["audit", "{dir}/spec.yaml", "--out", "{dir}/out"],
     r"error: splits: asks for 5900 records but the dataset has 1797 .* -> shrink the split sizes"),
    # ---- models
    ("model-unknown", spec("target: {model: resnet1000}\n"), ["audit", "{dir}/spec.yaml"],
     r"error: target.model.name: unknown model 'resnet1000' -> "),
    ("model-unknown-parameter", spec("target: {model: {name: mlp, params: {width: 3}}}\n"),
     ["audit", "{dir}/spec.yaml", "--out", "{dir}/out"],
     r"error: target.model.params: mlp has no parameter 'width' -> use one of: hidden, dropout, activation$"),
    ("model-does-not-fit-data", spec(OK + "dataset: synthetic\ntarget: {model: cnn}\n"),
     ["audit", "{dir}/spec.yaml", "--out", "{dir}/out"],
     r"error: target.model: cnn cannot be built for input \(100,\) and 10 classes: .* -> pick an architecture"),
    ("model-bad-parameter-value", spec("target: {model: {name: mlp, params: {activation: swish}}}\n"),
     ["audit", "{dir}/spec.yaml", "--out", "{dir}/out"],
     r"error: target.model: mlp cannot be built .*activation must be one of"),
    ("model-import-fails", spec("target: {model: no_such_pkg.nets:build}\n"), ["audit", "{dir}/spec.yaml"],
     r"error: target.model.name: cannot import module 'no_such_pkg.nets' .* -> make the module importable"),
    # ---- attacks and defenses
    ("attack-unknown", spec("attacks: [lira]\n"), ["audit", "{dir}/spec.yaml"],
     r"error: attacks\[0\].name: unknown attack 'lira' -> choose one of: .*lira_offline, lira_online, "),
    ("attack-unknown-parameter", spec("attacks: [{name: lira_online, params: {n_aug: 2}}]\n"),
     ["audit", "{dir}/spec.yaml", "--out", "{dir}/out"],
     r"error: attacks.lira_online.params: attack lira_online has no parameter 'n_aug' -> use one of: augmentations"),
    ("defense-unknown", spec("defenses: [dp-sgd]\n"), ["audit", "{dir}/spec.yaml"],
     r"error: defenses\[0\].name: unknown defense 'dp-sgd' -> did you mean 'dp_sgd'\? "),
    ("defense-unknown-parameter", spec("defenses: [{name: dp_sgd, params: {eps: 1}}]\n"),
     ["audit", "{dir}/spec.yaml", "--out", "{dir}/out"],
     r"error: defenses.dp_sgd.params: defense dp_sgd has no parameter 'eps' -> use one of: "),
    # ---- cache
    ("cache-dir-not-writable", {"blocker": "a file, not a directory"},
     ["audit", "--out", "{dir}/out", "--cache-dir", "{dir}/blocker/models"],
     r"error: cache.dir: cannot write to .*blocker/models: .* -> point cache.dir \(or CYPHERCAT_CACHE\) at a "
     r"writable directory, or use --no-cache$"),
    ("cache-unknown-action", {}, ["cache", "purge"],
     r"error: command line: argument action: invalid choice: 'purge' .* -> see `cyphercat cache --help`$"),
    # ---- command-line flags
    ("flag-unknown", {}, ["audit", "--frobnicate"],
     r"error: command line: unrecognized arguments: --frobnicate -> see `cyphercat --help`$"),
    ("flag-seed-not-a-number", {}, ["audit", "--seed", "abc"],
     r"error: command line: argument --seed: invalid int value: 'abc' -> see `cyphercat audit --help`$"),
    ("flag-unknown-backend", {}, ["audit", "--backend", "dask"],
     r"error: command line: argument --backend: invalid choice: 'dask' "),
    ("flag-zero-workers", {}, ["audit", "--backend", "process", "--workers", "0", "--out", "{dir}/out"],
     r"error: workers: Input should be greater than or equal to 1 -> fix this field of the spec$"),
    ("flag-workers-without-backend", {}, ["audit", "--workers", "4", "--out", "{dir}/out"],
     r"error: workers: 4 workers asked for, but the serial backend uses one -> add --backend process \(or ray\)"),
    ("flag-ray-address-without-ray", {}, ["audit", "--ray-address", "auto", "--out", "{dir}/out"],
     r"error: ray_address: a Ray address is set but the backend is 'serial' -> add --backend ray, or drop "),
    ("flag-bad-ray-address", {}, ["audit", "--backend", "ray", "--ray-address", "head node", "--out", "{dir}/out"],
     r"error: ray_address: 'head node' is not a Ray address -> use auto, HOST:PORT or ray://HOST:PORT$"),
    ("flag-negative-reference-models", {}, ["audit", "--reference-models", "-2"],
     r"error: reference_models: Input should be greater than or equal to 0 -> fix this field of the spec$"),
    ("flag-bad-fail-if", {}, ["audit", "--fail-if", "lira_online.auc = 0.6", "--out", "{dir}/out"],
     r"error: --fail-if: 'lira_online.auc = 0.6' uses '=', '=>' or '=<' -> write ==, >= or <="),
    ("report-no-results", {}, ["report", "{dir}/empty"],
     r"error: .*empty/results.json: no results here -> give the --out directory of a finished audit$"),
]

if not torch.cuda.is_available():
    CASES.append(("flag-cuda-without-gpu", {}, ["audit", "--device", "cuda", "--out", "{dir}/out"],
                  r"error: device: cuda was asked for but no CUDA device is available -> use --device auto or "))
if importlib.util.find_spec("ray") is None:
    CASES.append(("flag-ray-not-installed", {}, ["audit", "--backend", "ray", "--out", "{dir}/out"],
                  r"error: backend: ray is not installed -> pip install 'cyphercat\[ray\]', or use --backend process$"))


def run_cli(argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc = main(argv)
    return rc, err.getvalue()


@pytest.mark.parametrize("files,argv,expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_gives_one_line_and_exit_2(tmp_path, monkeypatch, files, argv, expected):
    monkeypatch.setenv("CYPHERCAT_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    for name, content in files.items():
        (tmp_path / name).write_bytes(content if isinstance(content, bytes) else content.encode())
    rc, err = run_cli([a.replace("{dir}", str(tmp_path)) for a in argv])
    assert rc == 2, err
    lines = [line for line in err.splitlines() if line.strip()]  # (a progress display may leave a blank line)
    assert len(lines) == 1 and "Traceback" not in err, err
    assert re.match(expected, lines[0]), err
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").glob("*/*.json")), "nothing trained"


def test_there_are_at_least_20_kinds_across_every_area():
    areas = {c[0].split("-")[0] for c in CASES}
    assert len(CASES) >= 20 and {"spec", "data", "model", "cache", "flag"} <= areas


def test_the_table_is_documented():
    doc = DOCS.read_text(encoding="utf-8")
    missing = [c[0] for c in CASES if f"`{c[0]}`" not in doc and not c[0].startswith(("flag-cuda", "flag-ray-not"))]
    assert not missing, f"add these rows to docs/errors.md: {missing}"
