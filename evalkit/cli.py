"""Console entry points. Thin: parse arguments, call one function, print one message on error."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from evalkit.errors import EvalkitError

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
log = logging.getLogger("evalkit")


def _fail(error: Exception, verbose: bool) -> None:
    if verbose:
        raise error
    print(f"evalkit: error: {error}", file=sys.stderr)
    sys.exit(2)


def run_main() -> None:
    """``evalkit-run [hydra overrides]``: one experiment, or a sweep with ``-m``."""
    if not (CONF_DIR / "config.yaml").is_file():
        print(
            f"evalkit: error: config folder not found at {CONF_DIR}; install from a clone "
            "with `pip install -e .`",
            file=sys.stderr,
        )
        sys.exit(2)
    import hydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import DictConfig

    import evalkit.config  # noqa: F401 - registers the config schema with Hydra

    @hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")
    def _task(cfg: DictConfig) -> float | None:
        from evalkit.runner import run_experiment
        from evalkit.summary import print_summary

        verbose = bool(cfg.get("verbose", False))
        folder = Path(HydraConfig.get().runtime.output_dir)
        try:
            metrics = run_experiment(cfg, folder)
        except EvalkitError as error:
            _fail(error, verbose)
            return None
        if "encoded" in metrics:
            print(f"encoded {metrics['encoded']} in {metrics['seconds']:.1f}s -> {folder}")
            return None
        latency_path = folder / "latency.json"
        import json

        latency = json.loads(latency_path.read_text()) if latency_path.is_file() else None
        print_summary(metrics, latency, str(folder))
        stage = metrics.get("reranked") or metrics["first_stage"]
        return next(iter(stage.values()))

    _task()


def report_main(argv: list[str] | None = None) -> None:
    """``evalkit-report RESULTS_DIR``: tables, significance and plots for finished runs."""
    parser = argparse.ArgumentParser(prog="evalkit-report", description=report_main.__doc__)
    parser.add_argument("results_dir", type=Path)
    parser.add_argument(
        "--baseline",
        default="auto",
        help="run name to compare against (default: the same first stage without reranking)",
    )
    parser.add_argument("--metric", default="nDCG@10", help="headline measure for plots")
    parser.add_argument(
        "--out", type=Path, default=None, help="output folder (default: RESULTS_DIR/report)"
    )
    parser.add_argument("--bootstrap", type=int, default=2000, help="bootstrap samples")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    try:
        from evalkit.report import build_report

        out = build_report(
            args.results_dir,
            out_dir=args.out,
            baseline=args.baseline,
            metric=args.metric,
            bootstrap=args.bootstrap,
        )
    except EvalkitError as error:
        _fail(error, args.verbose)
        return
    print(f"report written to {out}/report.md and {out}/report.html")


def decide_main(argv: list[str] | None = None) -> None:
    """``evalkit-decide RESULTS_DIR --p95-ms X [--qps Y]``: the configuration to deploy."""
    parser = argparse.ArgumentParser(prog="evalkit-decide", description=decide_main.__doc__)
    parser.add_argument("results_dir", type=Path)
    parser.add_argument("--p95-ms", type=float, required=True, help="p95 latency budget (ms)")
    parser.add_argument("--qps", type=float, default=None, help="sustained queries per second")
    parser.add_argument("--metric", default="nDCG@10")
    parser.add_argument(
        "--min-gain",
        type=float,
        default=0.0,
        help="smallest gain over the first stage worth reranking for",
    )
    parser.add_argument("--alpha", type=float, default=0.05, help="significance level")
    parser.add_argument("--dataset", default=None, help="dataset to decide for (when several)")
    parser.add_argument(
        "--out", type=Path, default=None, help="JSON output (default: RESULTS_DIR/decision.json)"
    )
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    try:
        from evalkit.decide import decide, render_decision
        from evalkit.io import write_json

        decision = decide(
            args.results_dir,
            p95_ms=args.p95_ms,
            qps=args.qps,
            metric=args.metric,
            min_gain=args.min_gain,
            alpha=args.alpha,
        )
    except EvalkitError as error:
        _fail(error, args.verbose)
        return
    out = args.out or args.results_dir / "decision.json"
    write_json(out, decision)
    print(render_decision(decision))
    print(f"\n(written to {out})")


def cache_main(argv: list[str] | None = None) -> None:
    """``evalkit-cache {info,clear} [--dir DIR]``: inspect or clear evalkit's caches."""
    parser = argparse.ArgumentParser(prog="evalkit-cache", description=cache_main.__doc__)
    parser.add_argument("action", choices=["info", "clear"])
    parser.add_argument("--dir", default="~/.cache/evalkit")
    args = parser.parse_args(argv)
    from evalkit.cache import clear_cache

    root = Path(args.dir).expanduser()
    if args.action == "clear":
        freed = clear_cache(root)
        print(f"cleared {root} ({freed / 2**20:.1f} MiB)")
        return
    size = sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) if root.exists() else 0
    print(f"{root}: {size / 2**20:.1f} MiB")
