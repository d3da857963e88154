"""The machine a timing ran on: how busy it was, and a thread count that does not
oversubscribe it.

On a shared machine, torch's default (one thread per core) competes with every other
process for the same cores, and one busy neighbour can move a CPU forward pass 3-15x.
:func:`timing_threads` picks the cores the other processes leave free; :class:`LoadProbe`
records the load average and the CPU share of other processes over a timed pass, so a
number measured on a busy machine says so.
"""

from __future__ import annotations

import os
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass

BUSY_SHARE = 0.25  # other processes using more than this share of the CPUs: a busy machine


def timing_threads(asked: int | None) -> int:
    """``latency.threads``, or the CPUs the other processes leave free (at least 1)."""
    if asked is not None:
        return asked
    cpus = os.cpu_count() or 1
    busy = round(os.getloadavg()[0]) if hasattr(os, "getloadavg") else 0
    return max(1, cpus - busy)


@contextmanager
def torch_threads(count: int):
    """Run the block with torch using ``count`` intra-op threads (restored after).

    A system that has not imported torch by the time it is timed (an HTTP reranker, a run
    file, a plugin of plain Python) has no torch threads to set: the block runs as it is,
    without importing torch (3.5 s of a 2-core machine's time, for nothing)."""
    torch = sys.modules.get("torch")
    if torch is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _cpu_seconds() -> tuple[float, float] | None:
    """(busy CPU seconds of the whole machine, of this process) so far; None off Linux."""
    try:
        fields = open("/proc/stat").readline().split()[1:]  # noqa: SIM115 - one line
    except OSError:
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    values = [int(v) for v in fields]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    own = os.times()
    return (sum(values) - idle) / ticks, own.user + own.system


@dataclass
class MachineLoad:
    """How busy the machine was over a timed pass."""

    cpus: int
    threads: int
    load_before: float | None
    load_after: float | None
    other_processes_cpu_share: float | None  # of all CPUs, over the pass

    @property
    def busy(self) -> bool:
        share = self.other_processes_cpu_share
        return share is not None and share > BUSY_SHARE

    def to_dict(self) -> dict:
        return {**asdict(self), "busy": self.busy}


class LoadProbe:
    """``with LoadProbe(threads) as probe: ...`` then ``probe.result``."""

    def __init__(self, threads: int) -> None:
        self.threads = threads
        self.result: MachineLoad | None = None

    def __enter__(self) -> LoadProbe:
        self._load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
        self._cpu = _cpu_seconds()
        self._wall = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        cpus = os.cpu_count() or 1
        share = None
        after = _cpu_seconds()
        wall = time.perf_counter() - self._wall
        if self._cpu is not None and after is not None and wall > 0:
            machine = after[0] - self._cpu[0]
            own = after[1] - self._cpu[1]
            share = min(1.0, max(0.0, (machine - own) / (wall * cpus)))
        self.result = MachineLoad(
            cpus,
            self.threads,
            self._load,
            os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
            share,
        )
