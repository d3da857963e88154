"""Phase lines: what a run is doing now, and how long it took (no silent minute).

Each phase of a run logs one line when it starts and one when it ends, with its seconds;
the bars inside a phase are evalkit's own (third-party bars are turned off where they are
called).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager

log = logging.getLogger("evalkit")


@contextmanager
def phase(name: str, detail: str = "") -> Iterator[None]:
    """``name: detail ...`` before the phase, ``name: done in 12.3 s`` after it."""
    log.info("%s%s ...", name, f": {detail}" if detail else "")
    started = time.perf_counter()
    yield
    log.info("%s: done in %.1f s", name, time.perf_counter() - started)
