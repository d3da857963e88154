"""Named crash points for crash-safety tests.

``checkpoint(name)`` does nothing unless the environment variable ``EVALKIT_KILL_AT``
equals ``name``; then the process sends itself SIGKILL, exactly as an OOM killer or a
cluster pre-emption would (no cleanup, no ``finally``). Tests use it to kill a real run at
chosen points and check that nothing half-written is ever taken for a result.
"""

from __future__ import annotations

import os
import signal

ENV = "EVALKIT_KILL_AT"


def checkpoint(name: str) -> None:
    if os.environ.get(ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
