"""A zygote: one process that has imported the peer's stack once and forks local peers from it.

A fresh peer process spends seconds of CPU importing torch, timm, hivemind and grpc before it trains
(about 4 s on the 2-core machine of docs/results.md). On a host shared by many peers every start
and every restart takes that CPU from the others' training, which a 16-peer churn soak measured as
the largest cost of churn. The zygote pays it once: it imports the stack, then forks one child per
request, and each child runs ``dssl peer`` with the imports already done (copy-on-write pages).

Fork safety: the zygote runs no torch operation, opens no gRPC channel or DHT, and starts no Python
thread; before each fork it checks that it still has no other Python thread and refuses otherwise
(the launcher then starts that peer as a fresh process). Importing torch and hivemind each leaves
one idle native thread blocked on a condition variable (measured: 3 threads after the imports); a
fork does not copy them, and torch re-creates its thread pools in a forked child. The engine tests
fork peers that train, gossip over gRPC, join the hivemind DHT and checkpoint (tests/launcher).

A child starts a new session (its own process group, like a spawned peer), points stdin at
/dev/null and stdout/stderr at its log, takes the requested environment and working directory,
reseeds ``random``, restores default signal handlers, and runs ``launcher.cli.main``; it never
returns into the zygote's loop.

Protocol: JSON lines over the zygote's stdin / stdout.

* zygote -> launcher, once: ``{"ready": true, "pid": p, "native_threads": n, "import_s": s}``;
* launcher -> zygote: ``{"argv": [...], "env": {...}, "cwd": "...", "log": "..."}`` where argv is
  what follows ``python -m launcher.cli`` (e.g. ``["peer", "--config", ...]``);
* zygote -> launcher: ``{"spawned": pid}`` or ``{"error": "..."}`` for each request, in order, and
  ``{"exited": pid, "code": c}`` whenever a child ends (``c`` as ``subprocess.Popen.returncode``:
  the exit status, or -N for signal N).

The zygote exits when its stdin closes; children it forked keep running (they are peers), so the
launcher keeps it until they have exited (:class:`launcher.zygote_client.Zygote`).
"""

from __future__ import annotations

import importlib
import json
import os
import random
import select
import signal
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any, NoReturn

# What a peer imports before it trains; imported once, here (the torchvision shim first: timm needs it).
PRELOAD = (
    "peer.torchvision_shim",
    "timm",
    "hivemind",
    "grpc",
    "peer.trainer",
    "peer.peer",
    "peer.cli",
    "gossip.discovery",
    "gossip.runner",
    "launcher.cli",
)
REAP_S = 0.2  # how often exited children are reaped and reported
REQUEST_KEYS = {"argv": list, "env": dict, "cwd": str, "log": str}


def native_threads() -> int:
    """Threads of this process in the kernel's view (includes those native libraries started)."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:  # no /proc
        return -1


def check_request(request: Any) -> dict:
    """The request if it is well formed; ValueError naming what is wrong otherwise."""
    if not isinstance(request, dict):
        raise ValueError(f"expected a JSON object, got {type(request).__name__}")
    for key, kind in REQUEST_KEYS.items():
        if not isinstance(request.get(key), kind):
            raise ValueError(f"{key!r}: expected {kind.__name__}, got {request.get(key)!r}")
    if not request["argv"] or not all(isinstance(a, str) for a in request["argv"]):
        raise ValueError("'argv': expected a non-empty list of strings")
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in request["env"].items()):
        raise ValueError("'env': expected string keys and values")
    if not Path(request["cwd"]).is_dir():
        raise ValueError(f"'cwd': {request['cwd']} is not a directory")
    return request


def _run_child(request: dict) -> NoReturn:
    """In the forked child: become the peer, never return."""
    code = 1
    try:
        os.setsid()
        log_fd = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        null_fd = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null_fd, 0)
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        os.close(log_fd)
        os.close(null_fd)
        sys.stdout.reconfigure(line_buffering=True)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        random.seed()
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGPIPE):
            signal.signal(sig, signal.SIG_DFL)
        sys.argv = ["dssl", *request["argv"]]
        from launcher.cli import main

        result = main(request["argv"])
        code = result if isinstance(result, int) else 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:  # noqa: BLE001 - the child reports everything on its log and exits
        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
    os._exit(code)


class Server:
    """The zygote's loop: read requests, fork, report spawns and exits."""

    def __init__(self, infd: int, out) -> None:
        self.infd, self.out = infd, out
        self.children: set[int] = set()
        self.pending = b""

    def send(self, message: dict) -> None:
        self.out.write((json.dumps(message) + "\n").encode())
        self.out.flush()

    def handle(self, line: bytes) -> dict:
        try:
            request = check_request(json.loads(line))
        except (ValueError, json.JSONDecodeError) as exc:
            return {"error": f"bad request: {exc}"}
        threads = threading.active_count()
        if threads != 1:
            return {"error": f"the zygote runs {threads} Python threads; forking it is not safe"}
        self.out.flush()
        pid = os.fork()
        if pid == 0:
            _run_child(request)
        self.children.add(pid)
        return {"spawned": pid}

    def reap(self) -> None:
        for pid in list(self.children):
            try:
                done, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                self.children.discard(pid)
                continue
            if done:
                self.children.discard(pid)
                self.send({"exited": pid, "code": os.waitstatus_to_exitcode(status)})

    def serve(self) -> None:
        """Until stdin closes: requests in, spawns and exits out."""
        while True:
            readable, _, _ = select.select([self.infd], [], [], REAP_S)
            self.reap()
            if not readable:
                continue
            chunk = os.read(self.infd, 1 << 16)
            if not chunk:
                return
            self.pending += chunk
            while b"\n" in self.pending:
                line, self.pending = self.pending.split(b"\n", 1)
                if line.strip():
                    self.send(self.handle(line))


def main() -> int:
    started = time.perf_counter()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the launcher, which stops the swarm
    for name in PRELOAD:
        importlib.import_module(name)
    server = Server(sys.stdin.fileno(), sys.stdout.buffer)
    ready = {"ready": True, "pid": os.getpid(), "native_threads": native_threads()}
    server.send({**ready, "import_s": round(time.perf_counter() - started, 3)})
    server.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
