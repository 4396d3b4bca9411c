"""The line-rate benchmark's ceiling: the same payload over one plain TCP socket, no gRPC.

``python -m benchmarks._netns_tcp sink HOST`` (inside namespace B) listens on ``HOST:0``, prints the
port, accepts one connection and answers each length-prefixed message with one byte once all of
it has arrived. ``python -m benchmarks._netns_tcp send HOST PORT NBYTES REPS GAP_S`` (inside A)
connects once, then ``REPS`` times waits ``GAP_S`` (idle, as between gossip rounds: Linux restarts
slow start after an idle RTO), sends ``NBYTES`` and waits for the answer; it prints the seconds of
each send-to-answer as one JSON list. Every socket operation has a timeout.
"""

from __future__ import annotations

import json
import socket
import struct
import sys
import time

TIMEOUT_S = 300.0
_HEADER = struct.Struct(">Q")


def _recv_exactly(conn: socket.socket, nbytes: int, buffer: bytearray) -> None:
    view, got = memoryview(buffer), 0
    while got < nbytes:
        n = conn.recv_into(view[got:nbytes])
        if n == 0:
            raise ConnectionError("sender closed mid-message")
        got += n


def sink(host: str) -> None:
    with socket.create_server((host, 0)) as server:
        server.settimeout(TIMEOUT_S)
        print(server.getsockname()[1], flush=True)
        conn, _ = server.accept()
        with conn:
            conn.settimeout(TIMEOUT_S)
            buffer = bytearray()
            while header := conn.recv(_HEADER.size, socket.MSG_WAITALL):
                (nbytes,) = _HEADER.unpack(header)
                if len(buffer) < nbytes:
                    buffer = bytearray(nbytes)
                _recv_exactly(conn, nbytes, buffer)
                conn.sendall(b"k")


def send(host: str, port: int, nbytes: int, reps: int, gap_s: float) -> list[float]:
    payload = bytes(nbytes)
    seconds = []
    with socket.create_connection((host, port), timeout=TIMEOUT_S) as conn:
        for _ in range(reps):
            time.sleep(gap_s)  # the idle gap between rounds is part of what is modelled
            t0 = time.perf_counter()
            conn.sendall(_HEADER.pack(nbytes))
            conn.sendall(payload)
            if conn.recv(1) != b"k":
                raise ConnectionError("sink closed before answering")
            seconds.append(time.perf_counter() - t0)
    return seconds


def main(argv: list[str]) -> int:
    if argv[:1] == ["sink"] and len(argv) == 2:
        sink(argv[1])
    elif argv[:1] == ["send"] and len(argv) == 6:
        print(json.dumps(send(argv[1], int(argv[2]), int(argv[3]), int(argv[4]), float(argv[5]))))
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
