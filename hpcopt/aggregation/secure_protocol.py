"""The rounds of secure aggregation between the users (all ranks) and the server (rank 0).

Round by round (semi-honest variant of Bonawitz et al. 2017, no signatures):
0 advertise  user → server: two X25519 public keys (c for shares, s for masks);
             server → users: the table of every user's keys.
1 share      user → server: for every other user v, v's Shamir shares of the user's s private
             key and self-mask seed b, sealed with ChaCha20-Poly1305 under X25519(c_u, c_v);
             and SHA-256(b). Server → user v: the ciphertexts addressed to v.
2 input      user → server: y = q + PRG(b) + Σ_{v>u} PRG(s_uv) − Σ_{v<u} PRG(s_uv) mod 2^R.
3 survivors  server → users who sent y: who sent y (U3). Fewer than t: everyone stops.
4 unmask     user → server: for each user, its share of b (sent y) or of the s key (did not).
             The server combines t shares, checks each secret (b against its commitment, an
             s key against its public key), removes the self masks and the masks shared with
             users who never sent y.
  result     server → every rank: a status header and the sum (MPI Bcast).
Rank 0's user talks to its server locally. A dropped rank sends a one-byte notice where the
server would otherwise time out; after-input drop-outs still take the survivor list.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from mpi4py import MPI

from hpcopt.aggregation import secure_crypto as crypto
from hpcopt.aggregation.secure import (
    SecureAggregationError,
    SecureConfig,
    _Clock,
    _ring_types,
    dropped_ranks,
)
from hpcopt.aggregation.secure_cost import COMMIT, GONE, ROUNDS, SHARE, status_bytes
from hpcopt.backend import Scratch

__all__ = ["Protocol"]

_TAG = 7300  # round r uses _TAG + r
MASK_KEY = b"hpcopt secagg mask"
SHARE_KEY = b"hpcopt secagg shares"
OK, FEW_INPUTS, BAD_CIPHERTEXT, FEW_ANSWERS, BAD_SEED, BAD_KEY = range(6)
Failure = tuple[int, int, int]  # (status code, two details)
ABORT = 8  # bytes of a user's "cannot decrypt" answer in round 4: the sender's rank, int64


def status_message(code: int, a: int, b: int, t: int) -> str:
    """One line for a failed run (the same on every rank)."""
    few = f"fewer than the threshold t={t}"
    wrong = "a wrong share in the unmasking round"
    text = {
        FEW_INPUTS: f"{a} users sent a masked input, {few}",
        BAD_CIPHERTEXT: f"rank {a} could not authenticate the shares rank {b} sealed for it",
        FEW_ANSWERS: f"{a} of {b} users answered the unmasking round, {few}",
        BAD_SEED: f"{wrong}: rank {a}'s self-mask seed does not match its commitment",
        BAD_KEY: f"{wrong}: rank {a}'s mask key does not match its public key",
    }[code]
    return f"secure aggregation: {text}"


def unmask_answer(plain: list[bytes], sent_input: np.ndarray) -> np.ndarray:
    """Round 4 answer: per user, the share of b (it sent y) or of its s private key."""
    parts = [p[SHARE:] if sent_input[u] else p[:SHARE] for u, p in enumerate(plain)]
    return np.frombuffer(b"".join(parts), dtype=np.uint8)


def forward_shares(messages: np.ndarray, p: int) -> list[np.ndarray]:
    """Round 1 at the server: for each user v, the ciphertexts every other user sent v."""
    size = crypto.SEALED_BYTES
    out = []
    for v in range(p):
        at = [(u, (v - (v > u)) * size) for u in range(p) if u != v]  # u lists v's peers in order
        out.append(np.concatenate([messages[u, a : a + size] for u, a in at]))
    return out


class Protocol:
    """One run of the protocol on this rank (user, and server on rank 0)."""

    def __init__(
        self, comm: MPI.Comm, config: SecureConfig, step: int, scratch: Scratch, clock: _Clock,
        d: int,
    ) -> None:  # fmt: skip
        self.comm, self.p, self.me = comm, comm.size, comm.rank
        self.config, self.scratch, self.clock = config, scratch, clock
        self.t = config.threshold_for(self.p)
        self.dtype = _ring_types(config.ring_bits)[0]
        self.nbytes = d * config.ring_bits // 8
        self.others = [v for v in range(self.p) if v != self.me]
        drops = dropped_ranks(self.p, config, step)
        self.gone_before = self.me in drops and config.drop == "before-input"
        self.gone_after = self.me in drops and config.drop == "after-input"
        self.sent = dict.fromkeys(ROUNDS, 0)
        size = self.nbytes
        self.zeros = scratch.plan(("secure-zeros", size), lambda: np.zeros(size, np.uint8))
        self.stream = scratch.get("secure-stream", size + 64, np.uint8)
        # This run's secrets and what the rounds bring: set as the rounds go.
        self.s_key = crypto.new_private_key()  # its public key seeds the pairwise masks
        self.c_key = crypto.new_private_key()  # its public key keys the sealed shares
        self.seed = crypto.new_seed()  # the self mask
        self.table = np.empty((0, 64), np.uint8)  # every user's (c, s) public keys
        self.share_keys: dict[int, bytes] = {}  # ChaCha20-Poly1305 key per peer
        self.plain: list[bytes] = []  # my shares for each user, before sealing
        self.inbox = np.empty((0, crypto.SEALED_BYTES), np.uint8)  # shares sealed for me

    # ---- messaging: every buffer handed to a send is counted here ----

    def _tag(self, rnd: str) -> int:
        return _TAG + ROUNDS.index(rnd)

    def _send(self, buf: np.ndarray, rnd: str) -> None:
        """A user's message to the server."""
        self.comm.Send([buf, MPI.BYTE], 0, self._tag(rnd))
        self.sent[rnd] += buf.nbytes

    def _recv(self, nbytes: int, rnd: str) -> np.ndarray:
        """A user's message from the server (a fresh buffer: kept for later rounds)."""
        buf = np.empty(nbytes, np.uint8)
        self.comm.Recv([buf, MPI.BYTE], 0, self._tag(rnd))
        return buf

    def _post(self, rnd: str, nbytes: int, sources: list[int]) -> tuple[Any, ...]:
        """Server: receives of up to ``nbytes`` from each source; complete with :meth:`_wait`."""
        rows = max(len(sources), 1)
        bufs = self.scratch.get(f"secure-{rnd}", rows * nbytes, np.uint8).reshape(rows, nbytes)
        tag = self._tag(rnd)
        reqs = [self.comm.Irecv([bufs[i], MPI.BYTE], v, tag) for i, v in enumerate(sources)]
        return bufs, reqs, sources

    def _wait(self, posted: tuple[Any, ...]) -> dict[int, np.ndarray]:
        """Each source's message, cut to the length that arrived."""
        bufs, reqs, sources = posted
        statuses = [MPI.Status() for _ in reqs]
        MPI.Request.Waitall(reqs, statuses)
        counts = [st.Get_count(MPI.BYTE) for st in statuses]
        return {v: bufs[i, : counts[i]] for i, v in enumerate(sources)}

    def _serve(self, bufs: dict[int, np.ndarray], rnd: str) -> None:
        """Server: one message to each user in ``bufs``."""
        tag = self._tag(rnd)
        reqs = [self.comm.Isend([buf, MPI.BYTE], v, tag) for v, buf in bufs.items()]
        self.sent[rnd] += sum(buf.nbytes for buf in bufs.values())
        MPI.Request.Waitall(reqs)

    # ---- the masks ----

    def _add_stream(self, acc: np.ndarray, seed: bytes, sign: int, lap: str = "expand") -> None:
        """acc ±= PRG(seed) in the ring; the expansion's time goes to ``lap``."""
        crypto.mask_stream(seed, self.config.prg).update_into(self.zeros, self.stream)
        self.clock.lap(lap)
        mask = self.stream[: self.nbytes].view(self.dtype)
        (np.add if sign > 0 else np.subtract)(acc, mask, out=acc)

    def _mask(self, ring: np.ndarray) -> None:
        """y = q + PRG(b) + Σ_{v>me} PRG(s_me,v) − Σ_{v<me} PRG(s_me,v), in place."""
        self._add_stream(ring, self.seed, +1)
        self.clock.lap("mask")
        for v in self.others:
            key = crypto.agree(self.s_key, self.table[v, 32:].tobytes(), MASK_KEY)
            self.clock.lap("keys")
            self._add_stream(ring, key, +1 if v > self.me else -1)
            self.clock.lap("mask")

    # ---- the run ----

    def aggregate(self, ring: np.ndarray) -> tuple[np.ndarray, tuple[int, ...]]:
        """Rounds 0–4 and the result; (unmasked ring sum, ranks whose input it holds)."""
        keys = crypto.public_bytes(self.c_key) + crypto.public_bytes(self.s_key)
        self.clock.lap("keys")
        self._advertise(np.frombuffer(keys, np.uint8))
        message = self._seal_shares()
        if self.me == 0:
            return self._serve_rest(ring, message)
        self._send(message, "share")
        self.inbox = self._recv(crypto.SEALED_BYTES * (self.p - 1), "share").reshape(self.p - 1, -1)
        self.clock.lap("communicate")
        if self.gone_before:
            self._send(np.zeros(GONE, np.uint8), "input")
            self.clock.lap("communicate")
            return self._result()
        self._mask(ring)
        self._send(ring.view(np.uint8), "input")
        sent_input = self._recv(self.p, "survivors")
        self.clock.lap("communicate")
        if int(sent_input.sum()) >= self.t:
            answer = self._answer(sent_input)
            self.clock.lap("recover")
            self._send(answer, "unmask")
            self.clock.lap("communicate")
        return self._result()

    def _advertise(self, own: np.ndarray) -> None:
        """Round 0: every user's two public keys, a (p, 64) table."""
        if self.me != 0:
            self._send(own, "advertise")
            self.table = self._recv(64 * self.p, "advertise").reshape(self.p, 64)
        else:
            got = self._wait(self._post("advertise", 64, self.others))
            self.table = np.stack([own, *(got[v] for v in self.others)])
            self._serve(dict.fromkeys(self.others, self.table.reshape(-1)), "advertise")
        self.clock.lap("communicate")

    def _seal_shares(self) -> np.ndarray:
        """Round 1's message: the sealed shares for each peer in order, then SHA-256(b)."""
        for v in self.others:
            self.share_keys[v] = crypto.agree(self.c_key, self.table[v, :32].tobytes(), SHARE_KEY)
        self.clock.lap("keys")
        key_shares = crypto.split(crypto.private_bytes(self.s_key), self.t, self.p)
        seed_shares = crypto.split(self.seed, self.t, self.p)
        self.plain = [a + b for a, b in zip(key_shares, seed_shares, strict=True)]
        sealed = [crypto.seal(self.share_keys[v], self.me, v, self.plain[v]) for v in self.others]
        message = np.frombuffer(b"".join([*sealed, crypto.commit(self.seed)]), np.uint8)
        self.clock.lap("share")
        return message

    def _answer(self, sent_input: np.ndarray) -> np.ndarray:
        """Round 4 at a user: the answer, or an abort naming a sender whose shares fail to open."""
        if self.gone_after:
            return np.zeros(GONE, np.uint8)
        mine = list(self.plain)  # plain[me] is my own share of my secrets
        for row, u in zip(self.inbox, self.others, strict=True):
            opened = crypto.open_sealed(self.share_keys[u], u, self.me, row.tobytes())
            if opened is None:
                return np.array([u], dtype=np.int64).view(np.uint8)
            mine[u] = opened
        return unmask_answer(mine, sent_input)

    def _result(
        self, code: int = OK, a: int = 0, b: int = 0, total: Any = None,
        sent_input: np.ndarray | None = None,
    ) -> tuple[np.ndarray, tuple[int, ...]]:  # fmt: skip
        """The server's status, who is in the sum, and the sum to every rank (Bcast).

        SecureAggregationError on every rank when the run failed.
        """
        head = status_bytes(self.p)
        buf = self.scratch.get("secure-result", head + self.nbytes, np.uint8)
        if self.me == 0:
            buf[:head] = 0
            buf[:24].view(np.int64)[:] = (code, a, b)
            if sent_input is not None:
                buf[24 : 24 + self.p] = sent_input
            if total is not None:
                buf[head:] = total.view(np.uint8)
            self.sent["result"] += buf.nbytes * (self.p - 1)
        self.comm.Bcast([buf, MPI.BYTE], root=0)
        self.clock.lap("communicate")
        code, a, b = (int(v) for v in buf[:24].view(np.int64))
        if code != OK:
            raise SecureAggregationError(status_message(code, a, b, self.t))
        contributors = tuple(int(u) for u in np.flatnonzero(buf[24 : 24 + self.p]))
        return buf[head:].view(self.dtype).copy(), contributors

    # ---- the server (rank 0) ----

    def _serve_rest(
        self, ring: np.ndarray, message: np.ndarray
    ) -> tuple[np.ndarray, tuple[int, ...]]:
        """Rounds 1–4 and the result at rank 0 (its own user's part included)."""
        got = self._wait(self._post("share", message.size, self.others))
        messages = np.stack([message, *(got[v] for v in self.others)])
        forwards = forward_shares(messages, self.p)
        self._serve({v: forwards[v] for v in self.others}, "share")
        self.inbox, commits = forwards[0].reshape(self.p - 1, -1), messages[:, -COMMIT:]
        posted = self._post("input", max(self.nbytes, GONE), self.others)
        self.clock.lap("communicate")
        self._mask(ring)
        inputs = self._wait(posted)
        sent_input = np.array([1] + [inputs[v].size == self.nbytes for v in self.others], np.uint8)
        survivors = [v for v in self.others if sent_input[v]]
        self._serve(dict.fromkeys(survivors, sent_input), "survivors")
        self.clock.lap("communicate")
        if int(sent_input.sum()) < self.t:
            return self._result(FEW_INPUTS, int(sent_input.sum()))
        posted = self._post("unmask", max(SHARE * self.p, ABORT), survivors)
        answers = {0: self._answer(sent_input)}
        self.clock.lap("recover")
        answers.update(self._wait(posted))
        self.clock.lap("communicate")
        failure = self._check_answers(answers)
        secrets: list[bytes] = []
        if failure is None:
            secrets, failure = self._reconstruct(answers, sent_input, commits)
            self.clock.lap("recover")
        if failure is not None:
            return self._result(*failure)
        total = self._unmask(ring, inputs, sent_input, secrets)
        return self._result(OK, 0, 0, total, sent_input)

    def _check_answers(self, answers: dict[int, np.ndarray]) -> Failure | None:
        """An abort, or too few answers, as (code, a, b); None when t answers hold shares."""
        for v, answer in answers.items():
            if answer.size == ABORT:
                return BAD_CIPHERTEXT, v, int(answer.view(np.int64)[0])
        full = sum(1 for answer in answers.values() if answer.size == SHARE * self.p)
        return (FEW_ANSWERS, full, len(answers)) if full < self.t else None

    def _reconstruct(
        self, answers: dict[int, np.ndarray], sent_input: np.ndarray, commits: np.ndarray
    ) -> tuple[list[bytes], Failure | None]:
        """Every user's b (sent y) or s private key (did not), each checked, from t answers."""
        holders = [v for v in sorted(answers) if answers[v].size == SHARE * self.p][: self.t]
        secrets: list[bytes] = []
        for u in range(self.p):
            cut = slice(u * SHARE, (u + 1) * SHARE)
            secret = crypto.combine([(v, answers[v][cut].tobytes()) for v in holders])
            if sent_input[u] and crypto.commit(secret) != commits[u].tobytes():
                return secrets, (BAD_SEED, u, 0)
            public = self.table[u, 32:].tobytes()
            if not sent_input[u] and crypto.public_of_private(secret) != public:
                return secrets, (BAD_KEY, u, 0)
            secrets.append(secret)
        return secrets, None

    def _unmask(
        self, ring: np.ndarray, inputs: dict[int, np.ndarray], sent_input: np.ndarray,
        secrets: list[bytes],
    ) -> np.ndarray:  # fmt: skip
        """Σ y − Σ PRG(b_u) − the masks survivors share with users who sent no input."""
        total = self.scratch.get("secure-total", ring.size, self.dtype)
        total[:] = ring
        for v, y in inputs.items():
            if sent_input[v]:
                np.add(total, y.view(self.dtype), out=total)
        for u in range(self.p):
            if sent_input[u]:
                self._add_stream(total, secrets[u], -1, "unmask")
                continue
            for v in map(int, np.flatnonzero(sent_input)):
                key = crypto.agree(secrets[u], self.table[v, 32:].tobytes(), MASK_KEY)
                self._add_stream(total, key, -1 if u > v else +1, "unmask")
        self.clock.lap("unmask")
        return total
