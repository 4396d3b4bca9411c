"""Two benchmark "hosts" joined by a shaped link: network namespaces, ``tc tbf``, and a delay line.

``shaped_pair(link)`` creates namespaces A and B (names carry this process's pid and a random tag,
so runs never collide), joins them, shapes both directions to ``link.rate_mbit`` with ``tc qdisc
... tbf`` and, when ``link.rtt_ms`` > 0, delays every packet by half the RTT each way; it yields
the namespaces and their addresses and deletes everything in ``finally`` (Ctrl-C included). The
addresses exist only inside the namespaces; the host's own interfaces and routes are never touched.

* No delay: a veth pair (10.77.0.1 / 10.77.0.2), ``tbf`` as the root qdisc of each end.
* With delay: this kernel has no ``netem`` (``CONFIG_NET_SCH_NETEM`` is off), so the delay is a
  userspace delay line: a TUN device in each namespace (10.79.0.1 / 10.79.0.2, point-to-point,
  ``tbf`` as root qdisc of each) and a small C program (``DELAY_LINE_C``, compiled with the system
  ``cc`` on first use) that reads each IP packet from one TUN device and writes it into the other
  ``rtt_ms / 2`` later (FIFO, microsecond timer). So the path is: sender's TCP -> tbf (rate) ->
  delay line (one-way delay) -> receiver's TCP, in both directions. TUN devices carry no GSO
  super-packets: every packet is at most the 1500-byte MTU, as on a real WAN path.

Needs root, iproute2 (``ip``, ``tc``) and, for a delay, a C compiler; ``unavailable_reason()``
says what is missing.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import select
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

IP_TIMEOUT_S = 10  # every ip / tc call is local and quick; this only guards against a wedged kernel
DELAY_LINE_START_S = 10.0  # the delay line opens both TUN devices and says "ready" within this
MTU = 1500


@dataclass(frozen=True)
class LinkSpec:
    """A link: rate in Mbit/s (each direction; full duplex) and round-trip delay in ms (0: none)."""

    rate_mbit: float
    rtt_ms: float = 0.0

    def __post_init__(self) -> None:
        if self.rate_mbit <= 0 or self.rtt_ms < 0:
            raise ValueError(f"need rate_mbit > 0 and rtt_ms >= 0, got {self.rate_mbit}, {self.rtt_ms}")

    @property
    def rate_bps(self) -> float:
        return self.rate_mbit * 1e6

    def tbf_args(self) -> list[str]:
        """``tbf`` parameters: the rate; a burst of 64 KiB (>= one GSO packet on veth, so none is
        dropped for size); a queue of 20 ms at line rate (latency), like a switch port buffer."""
        return ["tbf", "rate", f"{self.rate_mbit:g}mbit", "burst", "64kb", "latency", "20ms"]


@dataclass(frozen=True)
class ShapedPair:
    """The two namespaces, the address of each inside it, and the link between them."""

    a: str
    b: str
    addr_a: str
    addr_b: str
    link: LinkSpec

    @staticmethod
    def exec_prefix(namespace: str) -> list[str]:
        """Prefix a command with this to run it inside ``namespace``."""
        return ["ip", "netns", "exec", namespace]


def unavailable_reason(need_delay: bool) -> str | None:
    """None when this process can build a shaped pair, else what is missing."""
    if not sys.platform.startswith("linux") or os.geteuid() != 0:
        return "network namespaces and tc need Linux and root"
    for tool in ("ip", "tc") + (("cc",) if need_delay else ()):
        if shutil.which(tool) is None:
            return f"`{tool}` is not installed"
    if need_delay and not Path("/dev/net/tun").exists():
        return "/dev/net/tun is missing (the delay line needs TUN devices)"
    return None


def _run(*args: str) -> None:
    done = subprocess.run(list(args), capture_output=True, text=True, timeout=IP_TIMEOUT_S)
    if done.returncode != 0:
        raise RuntimeError(f"`{' '.join(args)}` failed: {done.stderr.strip() or done.stdout.strip()}")


def _shape(namespace: str, dev: str, link: LinkSpec) -> None:
    _run("tc", "-n", namespace, "qdisc", "replace", "dev", dev, "root", *link.tbf_args())


def _veth(a: str, b: str, link: LinkSpec) -> tuple[str, str]:
    """A veth pair, each end created directly inside its namespace, shaped; the two addresses."""
    _run("ip", "link", "add", "veth-a", "netns", a, "type", "veth", "peer", "name", "veth-b", "netns", b)
    for namespace, dev, addr in ((a, "veth-a", "10.77.0.1"), (b, "veth-b", "10.77.0.2")):
        _run("ip", "-n", namespace, "addr", "add", f"{addr}/24", "dev", dev)
        _run("ip", "-n", namespace, "link", "set", dev, "up")
        _shape(namespace, dev, link)
    return "10.77.0.1", "10.77.0.2"


def _tun_pair(a: str, b: str, link: LinkSpec) -> tuple[str, str]:
    """A persistent TUN device in each namespace (point-to-point to the other's address), shaped."""
    for namespace, addr, peer in ((a, "10.79.0.1", "10.79.0.2"), (b, "10.79.0.2", "10.79.0.1")):
        _run("ip", "netns", "exec", namespace, "ip", "tuntap", "add", "dev", "lr0", "mode", "tun")
        _run("ip", "-n", namespace, "link", "set", "lr0", "mtu", str(MTU), "txqueuelen", "10000")
        _run("ip", "-n", namespace, "addr", "add", addr, "peer", f"{peer}/32", "dev", "lr0")
        _run("ip", "-n", namespace, "link", "set", "lr0", "up")
        _shape(namespace, "lr0", link)
    return "10.79.0.1", "10.79.0.2"


@contextmanager
def shaped_pair(link: LinkSpec, prefix: str = "dssl-lr") -> Iterator[ShapedPair]:
    """Create the two namespaces and the shaped link; yield them; always tear everything down."""
    reason = unavailable_reason(link.rtt_ms > 0)
    if reason is not None:
        raise RuntimeError(f"cannot build the shaped link: {reason}")
    tag = f"{os.getpid()}-{secrets.token_hex(3)}"
    names = (f"{prefix}-{tag}-a", f"{prefix}-{tag}-b")
    created: list[str] = []
    delay_line: subprocess.Popen | None = None
    try:
        for namespace in names:
            _run("ip", "netns", "add", namespace)
            created.append(namespace)
            _run("ip", "-n", namespace, "link", "set", "lo", "up")
        if link.rtt_ms > 0:
            addr_a, addr_b = _tun_pair(*names, link)
            delay_line = start_delay_line(names, int(link.rtt_ms * 500))  # one-way delay in µs
        else:
            addr_a, addr_b = _veth(*names, link)
        yield ShapedPair(names[0], names[1], addr_a, addr_b, link)
    finally:
        if delay_line is not None:
            stop_delay_line(delay_line)
        for namespace in created:
            deleted = subprocess.run(
                ["ip", "netns", "delete", namespace], capture_output=True, text=True, timeout=IP_TIMEOUT_S
            )
            if deleted.returncode != 0:
                logger.warning("could not delete namespace %s: %s", namespace, deleted.stderr.strip())


# ---- the delay line ----------------------------------------------------------------------------

DELAY_LINE_C = r"""
/* Forward IP packets between two TUN devices (one per network namespace), each DELAY_US late. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>
#define SLOT 2048
#define SLOTS 65536u
struct queue { unsigned char *data; int len[SLOTS]; long long due[SLOTS]; unsigned head, tail; };
static unsigned char scratch[SLOT];
static long long now_us(void) {
  struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec * 1000000LL + t.tv_nsec / 1000;
}
static int open_tun(const char *ns_path, const char *name) {
  int ns = open(ns_path, O_RDONLY);
  if (ns < 0 || setns(ns, CLONE_NEWNET) != 0) { perror(ns_path); exit(2); }
  close(ns);
  int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK);
  struct ifreq ifr; memset(&ifr, 0, sizeof ifr);
  ifr.ifr_flags = IFF_TUN | IFF_NO_PI; strncpy(ifr.ifr_name, name, IFNAMSIZ - 1);
  if (fd < 0 || ioctl(fd, TUNSETIFF, &ifr) != 0) { perror("TUNSETIFF"); exit(2); }
  return fd;
}
static void fill(int fd, struct queue *q, long long delay) {
  for (;;) {
    int full = q->tail - q->head == SLOTS;
    unsigned i = q->tail % SLOTS;
    ssize_t n = read(fd, full ? scratch : q->data + (size_t)i * SLOT, SLOT);
    if (n <= 0) return;
    if (full) continue; /* queue full: the packet is dropped, as a full router queue would */
    q->len[i] = (int)n; q->due[i] = now_us() + delay; q->tail++;
  }
}
static long long drain(int fd, struct queue *q) {
  long long now = now_us();
  while (q->head != q->tail) {
    unsigned i = q->head % SLOTS;
    if (q->due[i] > now) return q->due[i] - now;
    if (write(fd, q->data + (size_t)i * SLOT, q->len[i]) < 0 && errno != EAGAIN) perror("write");
    q->head++;
  }
  return -1;
}
int main(int argc, char **argv) {
  if (argc != 6) { fprintf(stderr, "usage: %s NS_A TUN_A NS_B TUN_B DELAY_US\n", argv[0]); return 2; }
  long long delay = atoll(argv[5]);
  int fd[2] = {open_tun(argv[1], argv[2]), open_tun(argv[3], argv[4])};
  static struct queue q[2];
  for (int k = 0; k < 2; k++) q[k].data = malloc((size_t)SLOTS * SLOT);
  printf("ready\n"); fflush(stdout);
  for (;;) {
    struct pollfd p[3] = {{fd[0], POLLIN, 0}, {fd[1], POLLIN, 0}, {0, POLLIN, 0}};
    long long wait = -1;
    for (int k = 0; k < 2; k++) {
      long long w = drain(fd[1 - k], &q[k]); /* q[k]: packets read from fd[k], due for fd[1-k] */
      if (w >= 0 && (wait < 0 || w < wait)) wait = w;
    }
    struct timespec ts = {wait / 1000000, (wait % 1000000) * 1000};
    if (ppoll(p, 3, wait < 0 ? NULL : &ts, NULL) < 0 && errno != EINTR) { perror("ppoll"); return 1; }
    if (p[2].revents) return 0; /* stdin closed or written: the parent is done */
    for (int k = 0; k < 2; k++) if (p[k].revents & POLLIN) fill(fd[k], &q[k], delay);
  }
}
"""


def delay_line_binary() -> Path:
    """Compile ``DELAY_LINE_C`` once per source version (cached under the temp dir); its path."""
    binary = Path(tempfile.gettempdir()) / f"dssl-delay-line-{_source_digest()}"
    if not binary.exists():
        source = binary.with_suffix(".c")
        source.write_text(DELAY_LINE_C)
        scratch = binary.with_name(f"{binary.name}.{os.getpid()}")
        _run("cc", "-O2", "-o", str(scratch), str(source))
        scratch.replace(binary)
    return binary


def _source_digest() -> str:
    return hashlib.sha256(DELAY_LINE_C.encode()).hexdigest()[:12]


def start_delay_line(namespaces: tuple[str, str], delay_us: int) -> subprocess.Popen:
    """Start the delay line between the ``lr0`` TUN devices of both namespaces; wait for "ready"."""
    ns_paths = [f"/run/netns/{name}" for name in namespaces]
    command = [str(delay_line_binary()), ns_paths[0], "lr0", ns_paths[1], "lr0", str(delay_us)]
    with tempfile.TemporaryFile() as errors:  # a file, not a pipe: a full pipe would stall the wire
        proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errors)
        _wire_priority(proc.pid)
        ready, _, _ = select.select([proc.stdout], [], [], DELAY_LINE_START_S)
        if ready and proc.stdout.readline().startswith(b"ready"):
            return proc
        stop_delay_line(proc)
        errors.seek(0)
        raise RuntimeError(f"delay line did not start: {errors.read().decode(errors='replace').strip()}")


def _wire_priority(pid: int) -> None:
    """Run the delay line at nice 0 even when the benchmark runs under ``nice``: it is the wire,
    not the measured system, and a starved delay line would add scheduling jitter to the RTT (it
    needs little CPU: one read and one write per packet). Lowering nice needs root, as does all this.

    Set from the parent after the start, not in a ``preexec_fn``: Python code between fork and exec
    in a process with other threads (gRPC's, in a test run) can deadlock the child, which then
    never says "ready". The delay line is single-threaded, so its PID is its only thread."""
    try:
        os.setpriority(os.PRIO_PROCESS, pid, 0)
    except ProcessLookupError:  # it exited at once: the "ready" check reports why
        pass


def stop_delay_line(proc: subprocess.Popen) -> None:
    """Close its stdin (it exits on that); kill it by PID if it has not exited 5 s later."""
    try:
        proc.stdin.close()
        proc.wait(timeout=5)
    except (subprocess.TimeoutExpired, OSError):
        proc.kill()
        proc.wait(timeout=5)
