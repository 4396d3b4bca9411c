"""gRPC channel and server options for the gossip transport, each with the reason it is set.

Everything not listed here is grpcio's default. The method paths are taken from the generated
descriptor so a renamed RPC in ``gossip.proto`` cannot silently diverge from the handlers.
"""

from __future__ import annotations

from protocol import gossip_pb2 as pb
from protocol.frames import MAX_CHUNK_BYTES

# One Pull stream frame is at most a 4 MiB data chunk plus a few bytes of framing; a header with
# many tensor specs stays far below 1 MiB. Allow 8 MiB so a frame never hits grpcio's 4 MiB default
# receive cap, while a peer still cannot make us buffer an arbitrarily large single message.
MAX_MESSAGE_BYTES = 2 * MAX_CHUNK_BYTES

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Gossip"].full_name  # "dssl.gossip.v1.Gossip"
HELLO_METHOD = f"/{SERVICE_NAME}/Hello"
PULL_METHOD = f"/{SERVICE_NAME}/Pull"

# A server only ever receives requests (Hello / Pull: ids, a fingerprint, a 57-byte auth token), far
# below 64 KiB; a bigger message is refused by grpcio (RESOURCE_EXHAUSTED) before anyone buffers it.
MAX_REQUEST_BYTES = 64 << 10

_COMMON_OPTIONS: list[tuple[str, int]] = [
    # Frames are up to MAX_CHUNK_BYTES; see MAX_MESSAGE_BYTES above.
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    # A 44.6 MiB snapshot is ~45 frames; HTTP/2's default 64 KiB stream window would stall the
    # sender every 64 KiB waiting for WINDOW_UPDATEs. BDP probing grows the window automatically
    # (it is on by default; stated here because the throughput depends on it).
    ("grpc.http2.bdp_probe", 1),
    # Accept HTTP/2 DATA frames of up to 1 MiB instead of the 16 KiB default (SETTINGS_MAX_FRAME_SIZE
    # is what the receiver announces): a 1 MiB chunk then travels as one frame, not 64, which costs
    # the CPU-bound receiver less. Measured (benchmarks/linerate_bench.py, 1 Gbit/s link, loaded
    # machine): pull efficiency 0.54 -> 0.84 at load 9, 0.18 -> 0.21 at load 32; neutral at
    # 100 Mbit/s (docs/results.md, "Line rate").
    ("grpc.http2.max_frame_size", 1 << 20),
    # Detect a dead neighbour's half-open TCP connection within ~30 s even between rounds (a killed
    # host sends no FIN); pulls have their own deadlines, this only clears stale cached channels.
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.keepalive_timeout_ms", 10_000),
]

CHANNEL_OPTIONS: list[tuple[str, int | str]] = _COMMON_OPTIONS + [
    # Pull stream frames are up to MAX_CHUNK_BYTES; see MAX_MESSAGE_BYTES above.
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    # Keepalive pings are allowed on idle channels: cached channels to neighbours sit idle between
    # rounds, and we want them checked rather than discovered dead at the next pull.
    ("grpc.keepalive_permit_without_calls", 1),
    # Reconnect quickly after a neighbour restarts (default initial backoff is 1 s, max 120 s): a
    # peer that comes back should be pulled from in the next round, not minutes later.
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 5_000),
    # Never let grpcio retry a Pull on its own: a retried stream could silently mix two rounds; the
    # node decides what a failed pull means (its weight returns to the self-weight).
    ("grpc.enable_retries", 0),
]

SERVER_OPTIONS: list[tuple[str, int | str]] = _COMMON_OPTIONS + [
    # Requests are tiny: see MAX_REQUEST_BYTES.
    ("grpc.max_receive_message_length", MAX_REQUEST_BYTES),
    # Accept the clients' keepalive pings on idle connections (see CHANNEL_OPTIONS) instead of
    # answering them with GOAWAY "too_many_pings".
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    # Do not let two peers bind the same port by accident (SO_REUSEPORT is on by default in grpcio):
    # a second peer configured with a taken port must fail loudly at start.
    ("grpc.so_reuseport", 0),
]
