"""``cyphercat audit|validate|list|report|compare|cache|data`` — a thin shell over the Python API.

Exit codes: 0 success, 2 bad input (one line on stderr naming the field and the fix), 3 a
``--fail-if`` condition held (all outputs are written first), 130 interrupted.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

import yaml

from cyphercat.errors import CyphercatError, GateFailed

log = logging.getLogger("cyphercat")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2, like every other bad input
        raise CyphercatError("command line", message, f"see `{self.prog} --help`")


def _deep_merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _read_yaml(path: str | None) -> dict[str, Any]:
    from cyphercat.config import load_spec

    if path is None:
        return {}
    return load_spec(path).canonical()


def _spec_from_args(args: argparse.Namespace):
    from cyphercat.config import spec_from_dict

    data = _read_yaml(args.spec)
    over: dict[str, Any] = {}
    for key in ("seed", "device", "reference_models", "backend", "workers", "ray_address"):
        val = getattr(args, key, None)
        if val is not None:
            over[key] = val
    if getattr(args, "attack", None):
        over["attacks"] = [{"name": a} for a in args.attack]
    if getattr(args, "defense", None):
        over["defenses"] = [*data.get("defenses", []), *({"name": d} for d in args.defense)]
    cache: dict[str, Any] = {}
    if getattr(args, "no_cache", False):
        cache["enabled"] = False
    if getattr(args, "cache_dir", None):
        cache["dir"] = args.cache_dir
    if cache:
        over["cache"] = cache
    return spec_from_dict(_deep_merge(data, over))


def cmd_audit(args: argparse.Namespace) -> int:
    from cyphercat.pipeline import command_line, run_audit
    from cyphercat.progress import Progress, set_progress

    conditions = []
    if args.fail_if:
        from cyphercat.gate import parse_conditions

        conditions = parse_conditions(args.fail_if)
    spec = _spec_from_args(args)
    out = Path(args.out)
    with Progress(quiet=args.quiet) as progress:
        set_progress(progress)
        try:
            result = run_audit(spec, out, data_dir=args.data_dir, command=command_line())
        finally:
            set_progress(None)
    results = result.to_dict()
    if not args.quiet:
        try:
            from cyphercat.reports.terminal import print_results

            print_results(results)
        except ImportError:
            pass
        if results.get("scorecard"):
            from cyphercat.scorecard import print_scorecard

            print_scorecard(results["scorecard"])
        print(f"results written to {out}/results.json")
    if conditions:
        from cyphercat.gate import check

        failures = check(results, conditions)
        if failures:
            raise GateFailed(failures)
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    spec = _spec_from_args(args)
    from cyphercat.pipeline import prepare_run

    if args.deep:
        prepare_run(spec, data_dir=args.data_dir)
    print(f"ok: spec hash {spec.hash()}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from cyphercat.registry import ATTACKS, DATASETS, DEFENSES, MODELS

    data_dir = Path(args.data_dir) if args.data_dir else None
    console = Console()
    t = Table(title="datasets")
    for col in ("name", "modality", "present", "description"):
        t.add_column(col)
    for name, fn in DATASETS.items():
        try:
            present = "yes" if fn.present(data_dir) else "no"
        except Exception:  # noqa: BLE001 - a broken folder shouldn't break the listing
            present = "no"
        t.add_row(name, fn.modality, present, fn.description)
    console.print(t)
    t = Table(title="models")
    for col in ("name", "modalities", "batchable", "description"):
        t.add_column(col)
    for name, fn in MODELS.items():
        t.add_row(name, ", ".join(fn.modalities), "yes" if getattr(fn, "batchable", False) else "no", fn.description)
    console.print(t)
    for title, reg, attr in (("attacks", ATTACKS, "kind"), ("defenses", DEFENSES, "stage")):
        t = Table(title=title)
        for col in ("name", attr, "description"):
            t.add_column(col)
        for name, cls in reg.items():
            t.add_row(name, getattr(cls, attr, ""), getattr(cls, "description", ""))
        console.print(t)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from cyphercat.reports import write_all
    from cyphercat.results import load_results

    results, scores = load_results(args.out_dir)
    dataset = None
    try:
        from cyphercat.config import spec_from_dict
        from cyphercat.data.base import load_dataset

        spec = spec_from_dict(results["spec"])
        dataset = load_dataset(spec.dataset.name, spec.dataset.params, Path(args.data_dir) if args.data_dir else None)
    except CyphercatError as err:
        log.warning("no thumbnails: %s", err)
    paths = write_all(Path(args.out_dir), results, scores, dataset=dataset)
    for p in paths:
        print(p)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from cyphercat.reports import compare

    rows = compare.compare_runs([Path(d) for d in args.dirs])
    compare.print_compare(rows)
    if args.html:
        Path(args.html).write_text(compare.compare_html(rows), encoding="utf-8")
        print(f"written {args.html}")
    return 0


def cmd_cache(args: argparse.Namespace) -> int:
    from cyphercat.cache import ModelCache

    cache = ModelCache(args.cache_dir)
    if args.action == "info":
        info = cache.info()
        print(yaml.safe_dump(info, sort_keys=False).strip())
    else:
        print(f"removed {cache.clear()} cached models from {cache.root}")
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    from cyphercat.data import download

    path = download.fetch(args.name, Path(args.data_dir) if args.data_dir else None, url=args.url,
                          sha256=args.sha256)
    print(f"{args.name} is in {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="cyphercat", description="How much does a trained model leak about its training data?")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def spec_flags(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--seed", type=int, help="root seed (overrides the spec)")
        sp.add_argument("--attack", action="append", metavar="NAME", help="run only these attacks (repeatable)")
        sp.add_argument("--defense", action="append", metavar="NAME", help="add a defense with defaults (repeatable)")
        sp.add_argument("--reference-models", type=int, dest="reference_models", metavar="M")
        sp.add_argument("--device", choices=["auto", "cpu", "cuda"])
        sp.add_argument("--backend", choices=["serial", "process", "ray"])
        sp.add_argument("--workers", type=int)
        sp.add_argument("--ray-address", dest="ray_address", metavar="auto|HOST:PORT")
        sp.add_argument("--no-cache", action="store_true", dest="no_cache", help="train everything afresh")
        sp.add_argument("--cache-dir", dest="cache_dir", help="model cache (default $CYPHERCAT_CACHE or ~/.cache)")
        sp.add_argument("--data-dir", dest="data_dir", help="dataset files (default $CYPHERCAT_DATA)")

    a = sub.add_parser("audit", help="train the target, attack it, report")
    a.add_argument("spec", nargs="?", help="YAML spec (default: the built-in digits audit)")
    a.add_argument("--out", default="runs/audit", help="output directory (replaced when the run completes)")
    a.add_argument("--quiet", action="store_true", help="no progress bars or tables")
    a.add_argument("--fail-if", action="append", dest="fail_if", metavar="EXPR",
                   help='CI gate, e.g. "lira_online.tpr_at_fpr.0.001 > 0.05"; exit 3 when it holds')
    spec_flags(a)
    a.set_defaults(func=cmd_audit)

    v = sub.add_parser("validate", help="check a spec without running it")
    v.add_argument("spec", nargs="?")
    v.add_argument("--deep", action="store_true", help="also load the data and build the models")
    spec_flags(v)
    v.set_defaults(func=cmd_validate)

    ls = sub.add_parser("list", help="registered datasets, models, attacks and defenses")
    ls.add_argument("--data-dir", dest="data_dir")
    ls.set_defaults(func=cmd_list)

    r = sub.add_parser("report", help="(re)write report.html and summary.md of a finished audit")
    r.add_argument("out_dir")
    r.add_argument("--data-dir", dest="data_dir")
    r.set_defaults(func=cmd_report)

    c = sub.add_parser("compare", help="the same attacks across runs")
    c.add_argument("dirs", nargs="+")
    c.add_argument("--html", metavar="FILE")
    c.set_defaults(func=cmd_compare)

    k = sub.add_parser("cache", help="inspect or clear the model cache")
    k.add_argument("action", choices=["info", "clear"])
    k.add_argument("--cache-dir", dest="cache_dir")
    k.set_defaults(func=cmd_cache)

    d = sub.add_parser("data", help="dataset files")
    dsub = d.add_subparsers(dest="data_command", required=True, parser_class=_Parser)
    f = dsub.add_parser("fetch", help="download a dataset (SHA-256 checked)")
    f.add_argument("name")
    f.add_argument("--data-dir", dest="data_dir")
    f.add_argument("--url", help="a mirror of the official archive (needs --sha256)")
    f.add_argument("--sha256", help="expected SHA-256 of the file at --url")
    f.set_defaults(func=cmd_data)
    return p


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        from cyphercat.progress import setup_logging

        setup_logging(quiet=getattr(args, "quiet", False), verbose=args.verbose)
        return args.func(args)
    except CyphercatError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except GateFailed as err:
        print("fail-if: conditions hold:\n" + "\n".join(f"  {f}" for f in err.failures), file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        print("interrupted: finished models are cached; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
