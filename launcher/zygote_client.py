"""The launcher's side of the zygote (:mod:`launcher.zygote`): start it, ask it for peers, learn
when they exit.

:meth:`Zygote.spawn` returns a :class:`ZygoteChild`, which offers the part of ``subprocess.Popen``
that :class:`launcher.processes.SwarmProcesses` uses (``pid``, ``poll``, ``wait``, ``returncode``,
``stdin``), so a forked peer is watched, signalled (by its process group) and stopped exactly like a
spawned one. Exit codes come from the zygote, which is the children's parent. Every call has a
deadline; a zygote that dies or stops answering makes :meth:`Zygote.spawn` raise
:class:`ZygoteError`, and the launcher starts the peer as a fresh process instead.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

log = logging.getLogger(__name__)

READY_TIMEOUT_S = 120.0  # importing the peer's stack on a loaded host
SPAWN_TIMEOUT_S = 30.0  # one fork and its answer
STOP_TIMEOUT_S = 10.0
POLL_S = 0.2  # how often a child whose zygote is gone is checked
LOST_EXIT = -255  # the return code of a child that ended after its zygote: its real status is lost
ZYGOTE_COMMAND = (sys.executable, "-m", "launcher.zygote")
ENTRY = (sys.executable, "-m", "launcher.cli")  # the command prefix a zygote can run


class ZygoteError(RuntimeError):
    """The zygote could not start a peer (it died, timed out or refused)."""


def running(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


class ZygoteChild:
    """A peer forked by the zygote, seen like a ``subprocess.Popen`` (no pipes: stdin is None).

    Its exit code comes from the zygote. If the zygote itself is gone (``orphaned``), nobody can
    report it: once the process no longer runs its return code is :data:`LOST_EXIT`, so nothing waits
    forever on a child whose exit was never reported."""

    stdin = None

    def __init__(self, pid: int, orphaned: threading.Event) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self._exited = threading.Event()
        self._orphaned = orphaned

    def _set_exit(self, code: int) -> None:
        self.returncode = code
        self._exited.set()

    def poll(self) -> int | None:
        if self.returncode is None and self._orphaned.is_set() and not running(self.pid):
            self._set_exit(LOST_EXIT)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            left = POLL_S if deadline is None else min(POLL_S, deadline - time.monotonic())
            if left <= 0:
                raise subprocess.TimeoutExpired(f"zygote child {self.pid}", timeout)
            self._exited.wait(left)
        return self.returncode


class Zygote:
    """One zygote process; start with :meth:`start`, close with :meth:`close` after its children."""

    def __init__(self, env: dict[str, str] | None = None, cwd: str | Path | None = None) -> None:
        self.env, self.cwd = env, cwd
        self.proc: subprocess.Popen | None = None
        self.info: dict = {}
        self.children: dict[int, ZygoteChild] = {}
        self._answers: queue.Queue[dict] = queue.Queue()
        self._lock = threading.Lock()  # the children map, shared with the reader thread
        self._spawn_lock = threading.Lock()  # one request at a time: answers come back in order
        self._early_exits: dict[int, int] = {}  # exits reported before the spawn answer was read
        self._orphaned = threading.Event()  # set when the zygote's output ends (it exited)

    def start(self, timeout: float = READY_TIMEOUT_S) -> Zygote:
        """Start the zygote and wait until it has imported the stack."""
        self.proc = subprocess.Popen(
            ZYGOTE_COMMAND,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=self.env,
            cwd=self.cwd,
            start_new_session=True,
        )
        threading.Thread(target=self._read, name="zygote-reader", daemon=True).start()
        self.info = self._answer(timeout, "start")
        if not self.info.get("ready"):
            self.close()
            raise ZygoteError(f"zygote did not start: {self.info}")
        log.info("zygote pid %d ready (imports took %.1f s)", self.info["pid"], self.info["import_s"])
        return self

    def _read(self) -> None:
        """Reader thread: spawn answers to the queue, exits to their children."""
        for raw in self.proc.stdout:
            try:
                message = json.loads(raw)
            except json.JSONDecodeError:
                log.warning("zygote: unreadable line %r", raw[:200])
                continue
            if "exited" in message:
                with self._lock:
                    child = self.children.get(message["exited"])
                    if child is None:
                        self._early_exits[message["exited"]] = message["code"]
                    else:
                        child._set_exit(message["code"])
            else:
                self._answers.put(message)
        self._orphaned.set()
        self._answers.put({"error": "the zygote exited"})

    def _answer(self, timeout: float, what: str) -> dict:
        try:
            return self._answers.get(timeout=timeout)
        except queue.Empty:
            raise ZygoteError(f"zygote: no answer to {what} within {timeout:.0f} s") from None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def can_run(self, argv: list[str]) -> bool:
        """Whether ``argv`` is a ``python -m launcher.cli ...`` command of this interpreter."""
        return tuple(argv[: len(ENTRY)]) == ENTRY and len(argv) > len(ENTRY)

    def spawn(self, argv: list[str], env: dict[str, str], log_path: Path) -> ZygoteChild:
        """Fork a child running ``argv`` (a ``python -m launcher.cli`` command) with ``env``, its
        output appended to ``log_path``. Raises ZygoteError (nothing started) when it cannot."""
        if not self.can_run(argv):
            raise ZygoteError(f"the zygote runs only `{' '.join(ENTRY)} ...` commands, not {argv[:3]}")
        if not self.alive():
            raise ZygoteError("the zygote is not running")
        request = {"argv": list(argv[len(ENTRY) :]), "env": env, "cwd": os.getcwd(), "log": str(log_path)}
        with self._spawn_lock:
            try:
                self.proc.stdin.write((json.dumps(request) + "\n").encode())
                self.proc.stdin.flush()
            except OSError as exc:
                raise ZygoteError(f"zygote: cannot send a request: {exc}") from None
            answer = self._answer(SPAWN_TIMEOUT_S, "spawn")
        if "spawned" not in answer:
            raise ZygoteError(f"zygote refused: {answer.get('error', answer)}")
        child = ZygoteChild(answer["spawned"], self._orphaned)
        with self._lock:
            self.children[child.pid] = child
            if child.pid in self._early_exits:
                child._set_exit(self._early_exits.pop(child.pid))
        return child

    def close(self) -> None:
        """Stop the zygote (its stdin closes; SIGKILL after a deadline). Children still running
        lose their exit reports, so call this after they have exited."""
        if self.proc is None:
            return
        running = [c.pid for c in self.children.values() if c.returncode is None]
        if running:
            log.warning("zygote closed while children %s still run", running)
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=STOP_TIMEOUT_S)
        self.proc.stdout.close()

    def __enter__(self) -> Zygote:
        return self.start() if self.proc is None else self

    def __exit__(self, *exc) -> None:
        self.close()
