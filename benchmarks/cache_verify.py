"""Read overhead of verified caches: every cached artifact's checksum (xxh3-128) is checked
on each read. Times a cached embedding shard (.npy) and a first-stage run (.parquet)
loaded through ``cache.cached_file`` (verified) against a plain load of the same file.

    python benchmarks/cache_verify.py [--rows 200000] [--out results/cache_verify.md]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import emit, machine
from evalkit.cache import _load_npy, _save_npy, cached_file


def best_of(function, repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--smoke", action="store_true", help="seconds: 1,000 rows, a small run")
    args = parser.parse_args()
    queries = 10 if args.smoke else 1000
    if args.smoke:
        args.rows = 1000
    root = Path(tempfile.mkdtemp())
    matrix = np.random.default_rng(0).standard_normal((args.rows, 384)).astype(np.float32)
    run = pd.DataFrame(
        {
            "query_id": np.repeat([f"q{i}" for i in range(queries)], 1000),
            "doc_id": [f"d{i}" for i in range(queries * 1000)],
            "score": np.random.default_rng(1).random(queries * 1000),
        }
    )
    shard, table = root / "shard.npy", root / "run.parquet"
    cached_file(shard, lambda tmp: _save_npy(tmp, matrix), lambda p: _load_npy(p, args.rows))
    cached_file(table, lambda tmp: run.to_parquet(tmp, index=False), pd.read_parquet)

    def touch(array) -> float:  # read every byte, as a search over the shard does
        return float(np.asarray(array).sum())

    rows = []
    for name, plain, verified in (
        (
            f"embedding shard {args.rows:,} x 384 fp32 ({shard.stat().st_size / 2**20:.0f} MiB)",
            lambda: touch(_load_npy(shard, args.rows)),
            lambda: touch(cached_file(shard, None, lambda p: _load_npy(p, args.rows))),
        ),
        (
            f"first-stage run {len(run):,} rows ({table.stat().st_size / 2**20:.0f} MiB)",
            lambda: pd.read_parquet(table),
            lambda: cached_file(table, None, pd.read_parquet),
        ),
    ):
        plain_s, verified_s = best_of(plain), best_of(verified)
        rows.append(
            f"| {name} | {plain_s * 1000:.1f} | {verified_s * 1000:.1f} | "
            f"{verified_s / plain_s:.2f}x |"
        )
    emit(
        [
            f"Machine: {machine()}. Command: `python benchmarks/cache_verify.py` (best of 5).",
            "",
            "| artifact | plain load + use (ms) | verified load + use (ms) | ratio |",
            "|---|---:|---:|---:|",
            *rows,
        ],
        args.out,
    )


if __name__ == "__main__":
    main()
