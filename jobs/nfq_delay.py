"""Hold every packet of one NFQUEUE queue for a fixed time, then accept it: a one-way delay."""

from __future__ import annotations

import argparse
import collections
import ctypes
import select
import signal
import socket
import struct
import sys
import time
from pathlib import Path

NETLINK_NETFILTER = 12
SUBSYS_QUEUE = 3
MSG_PACKET, MSG_CONFIG, MSG_VERDICT_BATCH = 0, 2, 3
NLMSG_ERROR = 2
NLM_F_REQUEST, NLM_F_ACK = 1, 4
CFG_CMD, CFG_PARAMS, CFG_QUEUE_MAXLEN, CFG_MASK, CFG_FLAGS = 1, 2, 3, 4, 5
CMD_BIND = 1
COPY_META = 1
FLAG_GSO = 4
ATTR_PACKET_HDR, ATTR_VERDICT_HDR = 1, 2
NF_ACCEPT = 1
PR_SET_TIMERSLACK = 29
SO_RCVBUFFORCE = 33


def _attr(kind: int, payload: bytes) -> bytes:
    """One netlink attribute, padded to 4 bytes."""
    size = 4 + len(payload)
    return struct.pack("=HH", size, kind) + payload + b"\0" * (-size % 4)


def _message(kind: int, queue: int, attrs: list[bytes], flags: int = NLM_F_REQUEST) -> bytes:
    """A nfnetlink queue message: netlink header, nfgenmsg, attributes."""
    body = struct.pack("=BB", socket.AF_UNSPEC, 0) + struct.pack("!H", queue) + b"".join(attrs)
    header = struct.pack("=IHHII", 16 + len(body), (SUBSYS_QUEUE << 8) | kind, flags, 0, 0)
    return header + body


def _check_ack(sock: socket.socket) -> None:
    """Raise OSError when the kernel refused the last request."""
    reply = sock.recv(65536)
    kind = struct.unpack_from("=H", reply, 4)[0]
    errno = struct.unpack_from("=i", reply, 16)[0] if kind == NLMSG_ERROR else 0
    if errno:
        raise OSError(-errno, f"nfnetlink_queue refused the configuration: errno {-errno}")


def bind(queue: int, maxlen: int) -> socket.socket:
    """A netlink socket bound to QUEUE, copying packet metadata only, GSO packets whole."""
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 8 << 20)
    sock.bind((0, 0))
    requests = [
        [_attr(CFG_CMD, struct.pack("!BxH", CMD_BIND, socket.AF_INET))],
        [
            _attr(CFG_PARAMS, struct.pack("!IB", 0, COPY_META)),
            _attr(CFG_QUEUE_MAXLEN, struct.pack("!I", maxlen)),
            _attr(CFG_MASK, struct.pack("!I", FLAG_GSO)),
            _attr(CFG_FLAGS, struct.pack("!I", FLAG_GSO)),
        ],
    ]
    for attrs in requests:
        sock.send(_message(MSG_CONFIG, queue, attrs, NLM_F_REQUEST | NLM_F_ACK))
        _check_ack(sock)
    sock.setblocking(False)
    return sock


def packet_ids(data: bytes) -> list[int]:
    """The ids of the queued packets announced in one netlink read."""
    ids, offset = [], 0
    while offset + 16 <= len(data):
        size, kind = struct.unpack_from("=IH", data, offset)
        if kind == (SUBSYS_QUEUE << 8) | MSG_PACKET:
            at = offset + 20
            while at + 4 <= offset + size:
                length, attr = struct.unpack_from("=HH", data, at)
                if attr & 0x7FFF == ATTR_PACKET_HDR:
                    ids.append(struct.unpack_from("!I", data, at + 4)[0])
                at += max(4, (length + 3) & ~3)
        offset += max(16, (size + 3) & ~3)
    return ids


def hold(sock: socket.socket, queue: int, delay_s: float) -> None:
    """Accept each packet DELAY_S after it was queued, in order, forever."""
    pending: collections.deque[tuple[float, int]] = collections.deque()
    while True:
        timeout = max(0.0, pending[0][0] - time.monotonic()) if pending else None
        if select.select([sock], [], [], timeout)[0]:
            arrived = time.monotonic() + delay_s
            while True:
                try:
                    data = sock.recv(1 << 20)
                except BlockingIOError:
                    break
                pending.extend((arrived, pid) for pid in packet_ids(data))
        now, last = time.monotonic(), None
        while pending and pending[0][0] <= now:
            last = pending.popleft()[1]
        if last is not None:
            verdict = _attr(ATTR_VERDICT_HDR, struct.pack("!II", NF_ACCEPT, last))
            sock.send(_message(MSG_VERDICT_BATCH, queue, [verdict]))


def main() -> int:
    """Parse flags, bind the queue, signal readiness through a file, hold packets."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--queue", type=int, default=0)
    parser.add_argument("--delay-us", type=int, required=True)
    parser.add_argument("--maxlen", type=int, default=65536, help="packets held at most")
    parser.add_argument("--ready", type=Path, help="file created once the queue is bound")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    # The default 50 µs timer slack would add up to 50 µs to every release.
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_TIMERSLACK, 1, 0, 0, 0)
    sock = bind(args.queue, args.maxlen)
    if args.ready is not None:
        args.ready.touch()
    hold(sock, args.queue, args.delay_us / 1e6)
    return 0


if __name__ == "__main__":
    sys.exit(main())
