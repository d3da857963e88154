"""Console entry points: parse arguments, call the Python API, print one line on error.

Every command runs inside :func:`guarded`: a user error (:class:`EvalkitError`) prints
``evalkit: error: ...`` and exits 2; anything unexpected prints one line naming a log file
that holds the full trace and exits 1; no traceback reaches the terminal unless
``--verbose`` / ``verbose=true``.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import logging
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from evalkit.config.compose import CONF_DIR, precheck
from evalkit.errors import ConfigError, EvalkitError, problem

ERROR_LOG = "evalkit-error.log"
log = logging.getLogger("evalkit")


def _write_trace(error: BaseException, log_file: Path | None) -> Path:
    """Write the full trace of an unexpected error; returns the file (``log_file``, else
    one in the temp folder)."""
    text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    fallback = Path(tempfile.gettempdir()) / f"evalkit-error-{os.getpid()}.log"
    for path in (log_file, fallback):
        if path is None:
            continue
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            return path
        except OSError:
            continue
    return Path("(could not write the trace)")


def run_error_log(folder: Path) -> Path:
    """Where a failed run's trace goes: beside its folder, so the folder itself can go
    (a failed run leaves no run folder behind)."""
    return folder.parent / f"{folder.name}.{ERROR_LOG}"


def guarded(body: Callable[[], object], verbose: bool, log_file: Path | None = None) -> object:
    """Run ``body``; turn every exception into one line and an exit code."""
    try:
        return body()
    except SystemExit:
        raise
    except EvalkitError as error:
        if verbose:
            raise
        print(f"evalkit: error: {error}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("evalkit: interrupted", file=sys.stderr)
        sys.exit(130)
    except OSError as error:
        if verbose:
            raise
        if error.errno not in USER_CAUSED_ERRNOS:
            _internal(error, log_file)
        print(f"evalkit: error: {_os_message(error)}", file=sys.stderr)
        sys.exit(2)
    except MemoryError:
        print(
            "evalkit: error: out of memory (a bootstrap or sample size too large for this "
            "machine?); fix: lower --bootstrap / the sizes asked",
            file=sys.stderr,
        )
        sys.exit(2)
    except Exception as error:
        if verbose:
            raise
        _internal(error, log_file)


def _internal(error: BaseException, log_file: Path | None) -> None:
    """evalkit's own bug: one line naming the trace file, exit 1."""
    path = _write_trace(error, log_file)
    first = (str(error).strip().splitlines() or [""])[0][:300]
    print(
        f"evalkit: internal error: {type(error).__name__}: {first}; the full trace is in "
        f"{path} (please report it; verbose=true shows it here)",
        file=sys.stderr,
    )
    sys.exit(1)


# the conditions a user's machine or paths cause, not evalkit: read-only, full, a path
# through a file, a symlink loop, a missing permission
USER_CAUSED_ERRNOS = {
    errno.EACCES,
    errno.EPERM,
    errno.EROFS,
    errno.ENOSPC,
    errno.EDQUOT,
    errno.ENOTDIR,
    errno.EISDIR,
    errno.ELOOP,
    errno.ENAMETOOLONG,
    errno.EEXIST,
}


def _os_message(error: OSError) -> str:
    where = error.filename or "a file"
    fixes = {
        errno.ENOSPC: "free disk space (or point the output elsewhere), then rerun",
        errno.EDQUOT: "free space in your quota, then rerun",
        errno.ENOTDIR: "a part of the path is a file: choose another folder",
        errno.EISDIR: "it is a folder: name a file",
        errno.ELOOP: "the path loops through symlinks: fix the links",
        errno.EEXIST: "a file of that name is in the way: choose another path",
    }
    fix = fixes.get(error.errno, "choose a folder you can write to, or fix its permissions")
    return problem(f"cannot use {where}: {error.strerror}", fix=fix)


# --- evalkit-run -------------------------------------------------------------------------


def _remove_if_empty(folder: Path) -> None:
    with contextlib.suppress(OSError):
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()


def run_main() -> None:
    """``evalkit-run [hydra overrides]``: one experiment, or a sweep with ``-m``."""
    argv = sys.argv[1:]
    verbose = any(a in ("verbose=true", "verbose=True") for a in argv)
    if not (CONF_DIR / "config.yaml").is_file():
        print(
            f"evalkit: error: config folder not found at {CONF_DIR}; install from a clone "
            "with `pip install -e .`",
            file=sys.stderr,
        )
        sys.exit(2)
    if any(a in ("--help", "-h") for a in argv):
        from evalkit.cli_help import run_help

        print(run_help())
        return
    if not any(a in ("--hydra-help", "--info") for a in argv):
        guarded(lambda: precheck(argv), verbose)
    import hydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import DictConfig

    import evalkit.config  # noqa: F401 - registers the config schema with Hydra

    swept: list[str] = []

    @hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")
    def _task(cfg: DictConfig) -> float | None:
        hydra_config = HydraConfig.get()
        folder = Path(hydra_config.runtime.output_dir)
        if str(hydra_config.mode) == "RunMode.MULTIRUN" and not swept:
            swept.append(str(hydra_config.sweep.dir))
        try:
            verbose = bool(cfg.get("verbose"))
            return guarded(lambda: _run_one(cfg, folder), verbose, run_error_log(folder))
        finally:
            _remove_if_empty(folder)

    _task()
    if swept and Path(swept[0]).is_dir():
        print(
            f"\nsweep written to {swept[0]}\nnext: evalkit-report {swept[0]}  and  "
            f"evalkit-decide {swept[0]} --p95-ms <your budget>"
        )


def _run_one(cfg, folder: Path) -> float | None:
    from evalkit.analysis.summary import print_summary
    from evalkit.runner import encode_shards, run_experiment

    if cfg.retriever.get("shard_job"):
        summary = encode_shards(cfg, folder)
        print(f"encoded {summary['encoded']} in {summary['seconds']:.1f}s -> {folder}")
        return None
    from evalkit.analysis.run_plots import write_run_plots

    result = run_experiment(cfg, folder)
    write_run_plots(result)
    print_summary(result)
    return result.metrics_record.headline_value


# --- evalkit-report / evalkit-decide / evalkit-cache ---------------------------------------


def report_main(argv: list[str] | None = None) -> None:
    """``evalkit-report RESULTS_DIR``: tables, significance and plots for finished runs."""
    parser = argparse.ArgumentParser(prog="evalkit-report", description=report_main.__doc__)
    parser.add_argument("results_dir", type=Path)
    parser.add_argument(
        "--baseline",
        default="auto",
        help="system label to compare against (default: each system's own first stage)",
    )
    parser.add_argument("--metric", default="nDCG@10", help="headline measure")
    parser.add_argument(
        "--out", type=Path, default=None, help="output folder (default: RESULTS_DIR/report)"
    )
    parser.add_argument(
        "--bootstrap", type=int, default=None, help="bootstrap samples (>= 100; default 2000)"
    )
    parser.add_argument(
        "--p95-ms",
        type=float,
        default=None,
        help="open the report with the decision under this p95 budget (ms); without it, "
        "with the folder's decision.json when there is one",
    )
    parser.add_argument("--qps", type=float, default=None, help="with --p95-ms: sustained QPS")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)

    def body():
        from evalkit.analysis.budget import Budget
        from evalkit.analysis.report_folder import build_report

        started = time.perf_counter()
        budget = None
        if args.p95_ms is not None:
            budget = Budget(p95_ms=args.p95_ms, qps=args.qps, metric=args.metric)
        out = build_report(
            args.results_dir,
            args.out,
            args.baseline,
            args.metric,
            args.bootstrap or 2000,
            budget,
        )
        print(
            f"report written to {out}/report.md and {out}/report.html "
            f"({time.perf_counter() - started:.1f}s)"
        )

    guarded(body, args.verbose)


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
    parser.add_argument(
        "--replicas",
        type=int,
        default=None,
        help="with --qps: simulate this many replicas from each run's load curve",
    )
    parser.add_argument(
        "--max-usd-per-1k",
        type=float,
        default=None,
        help="most a priced (API) reranker may cost per 1,000 queries",
    )
    parser.add_argument("--dataset", default=None, help="dataset to decide for (when several)")
    parser.add_argument(
        "--selective",
        action="store_true",
        help="also recommend a per-query policy (rerank only the queries it selects)",
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="JSON output (default: RESULTS_DIR/decision.json)"
    )
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)

    def body():
        import evalkit
        from evalkit.io import write_json

        decision = evalkit.decide(
            args.results_dir,
            p95_ms=args.p95_ms,
            qps=args.qps,
            metric=args.metric,
            min_gain=args.min_gain,
            alpha=args.alpha,
            dataset=args.dataset,
            selective=args.selective,
            max_usd_per_1k=args.max_usd_per_1k,
            replicas=args.replicas,
        )
        out = args.out or args.results_dir / "decision.json"
        write_json(out, decision.to_json())
        print(decision.render())
        print(f"\n(written to {out})")

    guarded(body, args.verbose)


def eval_main(argv: list[str] | None = None) -> None:
    """``evalkit-eval RUN... --qrels FILE``: score existing TREC runs, as trec_eval -c does."""
    parser = argparse.ArgumentParser(
        prog="evalkit-eval",
        description=eval_main.__doc__,
        epilog="example: evalkit-eval es.trec vespa.trec --qrels qrels.txt -m nDCG@10 -m P_10",
    )
    parser.add_argument("runs", nargs="+", type=Path, help="TREC run files (.gz read too)")
    parser.add_argument("--qrels", type=Path, required=True, help="TREC qrels or a BEIR .tsv")
    parser.add_argument(
        "-m",
        "--metric",
        action="append",
        default=None,
        help="a measure (repeat; default: evalkit's); trec_eval's forms too: P.5,10 or P",
    )
    parser.add_argument("-l", "--relevance-level", type=int, default=1, help="as trec_eval -l")
    parser.add_argument("-q", "--per-query", action="store_true", help="per-query values too")
    parser.add_argument("--out", type=Path, default=None, help="save each run's folder here")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)

    def body():
        from evalkit.external import evaluate_runs, trec_eval_table
        from evalkit.measure_names import expand_trec_eval_option
        from evalkit.measures import DEFAULT_MEASURES

        if args.relevance_level < 1:
            raise ConfigError(problem("--relevance-level must be >= 1", "--relevance-level"))
        asked = [name for typed in args.metric or [] for name in expand_trec_eval_option(typed)]
        results = evaluate_runs(
            args.runs, args.qrels, asked or DEFAULT_MEASURES, args.relevance_level, args.out
        )
        print("\n".join(trec_eval_table(r, args.per_query) for r in results.values()))

    guarded(body, args.verbose)


def _size_text(size: int) -> str:
    return f"{size} bytes" if size < 2**20 else f"{size / 2**20:.1f} MiB"


def cache_main(argv: list[str] | None = None) -> None:
    """``evalkit-cache {info,clear} [--dir DIR]``: inspect or clear evalkit's caches."""
    parser = argparse.ArgumentParser(prog="evalkit-cache", description=cache_main.__doc__)
    parser.add_argument("action", choices=["info", "clear"])
    parser.add_argument("--dir", default="~/.cache/evalkit")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)

    def body():
        from evalkit.cache_root import cache_sizes, clear_cache

        root = Path(args.dir).expanduser()
        if args.action == "clear":
            cleared = clear_cache(root)
            print(f"cleared {root} ({_size_text(cleared.freed)})")
            if cleared.kept:
                names = ", ".join(str(p.relative_to(root)) for p in cleared.kept[:5])
                more = f" and {len(cleared.kept) - 5} more" if len(cleared.kept) > 5 else ""
                print(
                    f"kept {len(cleared.kept)} entries evalkit did not make (not in its "
                    f"manifest): {names}{more}; delete them by hand if they are not yours"
                )
            return
        sizes = cache_sizes(root)
        for kind, size in sizes.items():
            print(f"{kind:<14} {_size_text(size):>14}")
        print(f"{'total':<14} {_size_text(sum(sizes.values())):>14}  ({root})")

    guarded(body, args.verbose)
