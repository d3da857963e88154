"""Folder names from settings: run folders and sweep-job folders (Hydra resolvers)."""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf


def folder_slug(text: str, limit: int = 180) -> str:
    """A deterministic, filesystem-safe, readable folder name for a sweep job's overrides.

    Path values are shortened to their last component; when anything was shortened or cut,
    a hash of the full text keeps names unique.

    Example:
        >>> folder_slug("pipeline.depth=10,reranker=minilm_l6")
        'pipeline.depth=10,reranker=minilm_l6'
        >>> folder_slug("dataset.path=/data/cranfield,pipeline.depth=10")
        'dataset.path=cranfield,pipeline.depth=10-de98ec2b'
    """
    import hashlib
    import re

    items = []
    for item in text.split(",") if text else []:
        key, _, value = item.partition("=")
        if "/" in value:
            value = value.rstrip("/").rsplit("/", 1)[-1]
        items.append(f"{key}={value}" if _ else key)
    safe = re.sub(r"[^A-Za-z0-9=,._+-]", "_", ",".join(items)) or "default"
    if safe != text or len(safe) > limit:
        tag = hashlib.sha256(text.encode()).hexdigest()[:8]
        safe = f"{safe[: limit - 9]}-{tag}"
    return safe


def run_name(
    dataset: str, path: str | None, retriever: str, reranker: str, weights: str, depth: int
) -> str:
    """A run folder's name: the dataset (a local folder's own name), the stages, and a
    ``costonly`` mark for random weights.

    Example:
        >>> run_name("local", "/data/cranfield/", "bm25", "minilm_l6", "random", 100)
        'cranfield_bm25_minilm_l6-costonly_d100'
    """
    if path and dataset == "local":
        dataset = Path(str(path)).expanduser().name or dataset
    second = f"{reranker}-costonly" if weights == "random" and reranker != "none" else reranker
    stages = f"{retriever}_{second}_d{depth}" if reranker != "none" else f"{retriever}"
    return folder_slug(f"{dataset}_{stages}")


for _name, _function in (("evalkit_slug", folder_slug), ("evalkit_run_name", run_name)):
    if not OmegaConf.has_resolver(_name):
        OmegaConf.register_new_resolver(_name, _function)
