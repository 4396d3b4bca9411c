"""Whether a SIGINT / SIGTERM arrived while a block ran, whoever's Python handler took it.

``run_swarm`` catches Ctrl-C itself (its ``SignalForwarder`` stops the swarm cleanly) and returns as
if the swarm had ended; ``dssl swarm``, ``dssl demo`` and ``dssl sweep`` wrap it in a
:class:`SignalWatch` to tell an interrupted swarm from one that ended, and exit 130 after it.
"""

from __future__ import annotations

import os
import signal
from typing import Self

INTERRUPTED_EXIT = 130  # the shell's code for a command ended by Ctrl-C (128 + SIGINT)


class SignalWatch:
    """Notices SIGINT / SIGTERM delivered while someone else's Python handler is installed.

    The interpreter writes every handled signal's number to the wakeup fd whoever's handler runs,
    so reading it afterwards tells whether the block was interrupted. Off the main thread (where
    the wakeup fd cannot be set) nothing is noticed.
    """

    def __init__(self) -> None:
        self.signals: set[int] = set()
        self._fds: tuple[int, int] | None = None
        self._previous = -1

    def __enter__(self) -> Self:
        read, write = os.pipe()
        os.set_blocking(read, False)
        os.set_blocking(write, False)
        try:
            self._previous = signal.set_wakeup_fd(write)
        except ValueError:  # not the main thread
            os.close(read)
            os.close(write)
            return self
        self._fds = (read, write)
        return self

    def __exit__(self, *exc) -> None:
        if self._fds is None:
            return
        signal.set_wakeup_fd(self._previous)
        read, write = self._fds
        try:
            while chunk := os.read(read, 512):
                self.signals.update(chunk)
        except BlockingIOError:
            pass
        os.close(read)
        os.close(write)
        self._fds = None

    @property
    def interrupted(self) -> bool:
        return bool(self.signals & {signal.SIGINT, signal.SIGTERM})
