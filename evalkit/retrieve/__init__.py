"""First stage: ``Retriever.index(corpus)`` then ``Retriever.search(queries, k) -> run``."""

from evalkit.retrieve.base import Retriever, exclude_self_matches

__all__ = ["Retriever", "exclude_self_matches"]
