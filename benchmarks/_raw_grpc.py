"""The "raw" baseline: the practical limit of one pairwise exchange with plain grpcio.

Each of two processes runs a grpc.aio server on 127.0.0.1 (port 0) that serves its buffer as a
server stream of 1 MiB raw-bytes messages (a generic handler with identity serializers: no
protobuf, no framing beyond gRPC's own). At "go" both pull each other at the same time; every
chunk, as it arrives, is averaged straight into a preallocated result buffer
(``out = (own + peer) * 0.5`` on that slice), so receiving and averaging overlap and the payload is
never copied into an intermediate buffer. Server and channel take the gossip transport's own gRPC
options (``gossip._grpc``: 1 MiB HTTP/2 frames, BDP probing, message limits), so the ratio
gossip / raw measures what our exchange adds on top of gRPC, never a transport setting the
baseline lacks (grpcio's default is 16 KiB frames; docs/results.md "Gossip transport" has both).

Choices, measured on the shared 2-core machine at load ≈ 1–2 (medians of 7–11 exchanges of
44.6 MiB): grpc.aio 54–61 ms against sync grpc 59–65 ms; averaging chunk by chunk on arrival
54–61 ms against copy-into-a-buffer-then-average 62–72 ms; uvloop, used when importable (as the
gossip runner does), is within noise of the stdlib loop. Under load ≈ 10 all figures roughly double.
grpcio only sends ``bytes``, so a memoryview cannot be streamed: ``reset`` publishes the snapshot
as immutable 1 MiB ``bytes`` chunks (the one copy a publish makes, untimed — a published snapshot is
read-only by construction), and serving is then copy-free on the Python side.

Timing: ``benchmarks.time_pair`` — coordinator wall time from the "go" sent to both processes to
both holding the average, after both are armed (buffers restored and published), warm-up discarded.
The result is checked bit-exactly against the average of both seeded buffers after every exchange.

Run alone: ``.venv/bin/python benchmarks/_raw_grpc.py`` (resnet18 size, prints the median).
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import threading
from pathlib import Path

import grpc
import numpy as np

if __package__ in (None, ""):  # run as a script: make the `benchmarks` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import SEEDS, make_buffer, time_pair  # noqa: E402
from gossip._grpc import CHANNEL_OPTIONS, SERVER_OPTIONS  # noqa: E402

RESNET18_FLOATS = 11_689_512  # timm resnet18 parameters (44.6 MiB as float32)
CHUNK_BYTES = 1 << 20  # 1 MiB per stream message (docs/design.md §4: 256 KiB is 2x slower, 1-4 MiB equal)
_SERVICE = "dssl.bench.Raw"
_METHOD = f"/{_SERVICE}/Pull"
_PULL_DEADLINE_S = 60.0  # one whole pull; generous because the machine's cores are shared
_CONNECT_DEADLINE_S = 30.0  # channel_ready on loopback
_LOOP_CALL_TIMEOUT_S = 90.0  # any call into the side's event-loop thread


def _new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop when importable (the gossip runner's choice too), else the stdlib loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class RawGrpcSide:
    """One process of the raw exchange: an aio server streaming this buffer, an aio channel to the
    peer, both on an event loop in a background thread (so this side keeps serving between calls)."""

    def __init__(self, rank: int, num_floats: int):
        self._original = make_buffer(num_floats, SEEDS[rank])
        self._own = self._original.copy()
        self._out = np.empty_like(self._own)
        self._chunks: list[bytes] = []
        self._channel: grpc.aio.Channel | None = None
        self._pull = None
        self._loop = _new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="raw-grpc-loop", daemon=True)
        self._thread.start()
        self._server, self._port = self._call(self._start_server())

    def _call(self, coro):
        """Run a coroutine on the side's loop and wait for it (bounded)."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(_LOOP_CALL_TIMEOUT_S)

    async def _start_server(self) -> tuple[grpc.aio.Server, int]:
        handler = grpc.method_handlers_generic_handler(
            _SERVICE, {"Pull": grpc.unary_stream_rpc_method_handler(self._serve_pull)}
        )
        server = grpc.aio.server(handlers=[handler], options=SERVER_OPTIONS)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        return server, port

    async def _serve_pull(self, request: bytes, context: grpc.aio.ServicerContext):
        """Stream the published snapshot, one 1 MiB message per chunk."""
        for chunk in self._chunks:
            yield chunk

    def address(self) -> str:
        return f"127.0.0.1:{self._port}"

    def connect(self, peer_address: str) -> None:
        self._call(self._open_channel(peer_address))

    async def _open_channel(self, peer_address: str) -> None:
        self._channel = grpc.aio.insecure_channel(peer_address, options=CHANNEL_OPTIONS)
        await asyncio.wait_for(self._channel.channel_ready(), _CONNECT_DEADLINE_S)
        self._pull = self._channel.unary_stream(_METHOD)

    def reset(self) -> None:
        """Restore the original buffer and publish it as immutable 1 MiB chunks."""
        np.copyto(self._own, self._original)
        view = memoryview(self._own).cast("B")
        starts = range(0, len(view), CHUNK_BYTES)
        self._chunks = [bytes(view[start : start + CHUNK_BYTES]) for start in starts]

    def exchange(self) -> dict[str, float]:
        self._call(self._pull_and_average())
        return {}

    async def _pull_and_average(self) -> None:
        """Pull the peer's stream and average each chunk into ``out`` as it arrives."""
        own, out = self._own, self._out
        half = np.float32(0.5)
        start = 0
        async for chunk in self._pull(b"", timeout=_PULL_DEADLINE_S):
            peer = np.frombuffer(chunk, dtype=np.float32)
            stop = start + peer.size
            if stop > own.size:
                raise ValueError(f"peer sent more than {own.nbytes} bytes")
            np.add(own[start:stop], peer, out=out[start:stop])
            np.multiply(out[start:stop], half, out=out[start:stop])
            start = stop
        if start != own.size:
            raise ValueError(f"peer stream ended after {4 * start} of {own.nbytes} bytes")

    def result(self) -> np.ndarray:
        return self._out

    def disconnect(self) -> None:
        if self._channel is not None:
            self._call(self._channel.close())
            self._channel = None

    def close(self) -> None:
        try:
            self.disconnect()
            self._call(self._server.stop(grace=None))
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)


def measure(num_floats: int, reps: int = 5, warmup: int = 2) -> list[float]:
    """Seconds of each of ``reps`` timed raw-grpc pairwise exchanges of ``num_floats`` float32
    (after ``warmup`` untimed ones), timed as ``benchmarks.time_pair`` defines."""
    return [rep.wall_s for rep in time_pair(RawGrpcSide, num_floats, reps, warmup, atol=0.0)]


def main() -> None:
    """Print the median raw exchange time for the resnet18 payload."""
    times = measure(RESNET18_FLOATS)
    mib = RESNET18_FLOATS * 4 / 2**20
    print(
        f"raw grpc pairwise exchange, {mib:.1f} MiB: median {statistics.median(times) * 1e3:.1f} ms "
        f"(reps: {' '.join(f'{t * 1e3:.1f}' for t in times)} ms)"
    )


if __name__ == "__main__":
    main()
