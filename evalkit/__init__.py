"""evalkit: two-stage retrieval evaluation and the decision whether to rerank."""

from __future__ import annotations

__version__ = "0.1.0"
