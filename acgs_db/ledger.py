"""The tamper-evident ledger (migration 0010): seal, digest, verify.

Every statement that inserts validations leaves a ledger entry (row count, ids, SHA-256 of its
rows' digests in id order); :func:`seal` gathers final entries into a block chained to the
previous one; :func:`latest_digest` is what an operator keeps outside the database;
:func:`verify` recomputes rows -> entries -> blocks -> chain here, in Python, from the columns
alone (the server's own digest functions are not trusted), and compares the chain with a digest.

The encodings (README, "Tamper-evident ledger") are implemented twice on purpose: in SQL, where
writers and the seal compute them, and here, where the verifier recomputes them.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import re
import struct
import time
from collections.abc import Generator, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from acgs_db.errors import AcgsDbError
from acgs_db.resources import load_sql

GENESIS = bytes(32)
_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
_MICRO = timedelta(microseconds=1)
_INF = 1 << 63
_RANGE = re.compile(r"\[(-?\d+),(-?\d+)\)")
_Q = struct.Struct(">q")
_I = struct.Struct(">i")
_FETCH = 10_000
_SHOWN = 20  # id ranges shown per problem


class LedgerError(AcgsDbError):
    """The ledger cannot be read or a digest cannot be parsed."""


# -- encodings (README: "Tamper-evident ledger") ----------------------------------------------


def _micros(at: datetime) -> int:
    return (at - _EPOCH) // _MICRO


def _lp(text: str) -> bytes:
    data = text.encode("utf-8")
    return _I.pack(len(data)) + data


def row_digest(
    id_: int,
    tenant_id: str,
    decision_id: str,
    constitutional_hash: str,
    score_text: str,
    details_text: str | None,
    processing_time_ms: int | None,
    created_at: datetime,
) -> bytes:
    """SHA-256 of one validation's canonical encoding (``ledger_row_digest()`` in SQL): id
    (8 bytes), netstrings ``LENGTH:VALUE,`` of the text columns (``-,`` for NULL), the time in
    decimal and ``,`` (``-,``), ``created_at`` (8 bytes, microseconds since 2000)."""
    t, d, h, s = (
        tenant_id.encode(),
        decision_id.encode(),
        constitutional_hash.encode(),
        score_text.encode(),
    )
    if details_text is None:
        j = b"-,"
    else:
        jb = details_text.encode()
        j = b"%d:%b," % (len(jb), jb)
    p = b"-," if processing_time_ms is None else b"%d," % processing_time_ms
    return hashlib.sha256(
        b"%b%d:%b,%d:%b,%d:%b,%d:%b,%b%b%b"
        % (
            _Q.pack(id_),
            len(t),
            t,
            len(d),
            d,
            len(h),
            h,
            len(s),
            s,
            j,
            p,
            _Q.pack((created_at - _EPOCH) // _MICRO),
        )
    ).digest()


@dataclass(frozen=True, slots=True)
class Entry:
    """One ledger entry as stored."""

    entry_id: int
    xid: int
    kind: str
    row_count: int | None
    min_id: int | None
    max_id: int | None
    ids: str
    rows_digest: bytes | None
    partition: str | None
    bounds: str | None
    logged_at: datetime

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> Entry:
        digest = row[7]
        return cls(
            entry_id=row[0],
            xid=row[1],
            kind=row[2],
            row_count=row[3],
            min_id=row[4],
            max_id=row[5],
            ids=row[6],
            rows_digest=None if digest is None else bytes(digest),
            partition=row[8],
            bounds=row[9],
            logged_at=row[10],
        )

    def ranges(self) -> list[tuple[int, int]]:
        """Its ids as half-open ranges, ascending."""
        return [(int(a), int(b)) for a, b in _RANGE.findall(self.ids)]

    def hash(self) -> bytes:
        """``ledger_entry_hash()``: the leaf of its block's Merkle tree."""
        return hashlib.sha256(
            b"".join(
                (
                    _Q.pack(self.entry_id),
                    _Q.pack(self.xid),
                    _lp(self.kind),
                    _Q.pack(-1 if self.row_count is None else self.row_count),
                    _lp(self.ids),
                    b"\x00" if self.rows_digest is None else b"\x01" + self.rows_digest,
                    _lp(self.partition or ""),
                    _lp(self.bounds or ""),
                    _Q.pack(_micros(self.logged_at)),
                )
            )
        ).digest()


def merkle_root(entry_hashes: Sequence[bytes]) -> bytes:
    """Leaves SHA-256(0x00 || h); nodes SHA-256(0x01 || left || right); an odd last node
    goes up unchanged (``ledger_merkle_root()``)."""
    level = [hashlib.sha256(b"\x00" + h).digest() for h in entry_hashes]
    while len(level) > 1:
        up = [
            hashlib.sha256(b"\x01" + level[i] + level[i + 1]).digest()
            for i in range(0, len(level) - 1, 2)
        ]
        if len(level) % 2:
            up.append(level[-1])
        level = up
    if not level:
        raise ValueError("a block has at least one entry")
    return level[0]


@dataclass(frozen=True, slots=True)
class Block:
    """One sealed block as stored."""

    block_id: int
    prev_hash: bytes
    merkle_root: bytes
    xid_lo: int
    xid_hi: int
    entry_count: int
    row_count: int
    sealed_at: datetime
    block_hash: bytes

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> Block:
        b = list(row)
        for i in (1, 2, 8):
            b[i] = bytes(b[i])
        return cls(*b)

    def computed_hash(self, prev_hash: bytes, root: bytes) -> bytes:
        """The block hash from a previous hash and a root (``ledger_seal()``)."""
        meta = (self.block_id, self.xid_lo, self.xid_hi, self.entry_count, self.row_count)
        return hashlib.sha256(
            prev_hash + root + b"".join(_Q.pack(v) for v in meta) + _Q.pack(_micros(self.sealed_at))
        ).digest()


# -- digest ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Digest:
    """The latest block's id and hash: what an operator keeps outside the database."""

    block_id: int
    block_hash: str  # hex
    sealed_at: str | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def parse(cls, text_or_path: str) -> Digest:
        """A digest from its JSON, or from a file holding it."""
        text = text_or_path
        if not text.lstrip().startswith("{"):
            try:
                text = Path(text_or_path).read_text(encoding="utf-8")
            except OSError as exc:
                raise LedgerError(f"cannot read the digest {text_or_path!r}: {exc}") from None
        try:
            data = json.loads(text)
            digest = cls(int(data["block_id"]), str(data["block_hash"]), data.get("sealed_at"))
            bytes.fromhex(digest.block_hash)
        except (ValueError, KeyError, TypeError) as exc:
            raise LedgerError(
                f"not a ledger digest (JSON with block_id and block_hash): {exc}"
            ) from None
        return digest


@dataclass(frozen=True, slots=True)
class SealResult:
    block_id: int
    entry_count: int
    row_count: int
    block_hash: str


def seal(url: str) -> SealResult | None:
    """Seal the final entries into a new block; None when nothing is final yet."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(load_sql("ledger/seal")).fetchone()
    if row is None:
        return None
    return SealResult(int(row[0]), int(row[1]), int(row[2]), bytes(row[3]).hex())


def latest_digest(url: str) -> Digest | None:
    """The newest block's digest, or None before the first seal."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(load_sql("ledger/latest_block")).fetchone()
    if row is None:
        return None
    return Digest(int(row[0]), bytes(row[1]).hex(), row[2].isoformat())


# -- verify ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing that does not match."""

    kind: str  # changed | missing | unrecorded | entry | block | chain | digest
    block: int | None  # the block it belongs to; None for rows without an entry or the tail
    detail: str
    entry: int | None = None
    ids: tuple[tuple[int, int], ...] = ()  # inclusive id ranges

    def line(self) -> str:
        where = "unsealed" if self.block is None else f"block {self.block}"
        ids = f": ids {_show(self.ids)}" if self.ids else ""
        return f"{where}: {self.detail}{ids}"


@dataclass(slots=True)
class VerifyReport:
    """What :func:`verify` checked and found."""

    ok: bool = True
    from_block: int = 1
    last_block: int | None = None
    blocks: int = 0
    entries: int = 0
    rows: int = 0
    rows_dropped: int = 0
    drops: int = 0
    partial_entries: int = 0
    digest_matched: bool | None = None
    problems: list[Problem] = field(default_factory=list)
    duration_s: float = 0.0

    @property
    def first_bad_block(self) -> int | None:
        blocks = [p.block for p in self.problems if p.block is not None]
        return min(blocks) if blocks else None

    def lines(self) -> list[str]:
        if self.ok:
            head = (
                f"verified: blocks {self.from_block}..{self.last_block or '-'}"
                f" ({self.blocks} checked), {self.entries} entries, {self.rows} rows"
                f" in {self.duration_s:.3f} s"
            )
            if self.drops:
                head += (
                    f"; {self.rows_dropped} rows dropped by retention in {self.drops} partitions"
                )
            if self.digest_matched:
                head += "; the digest matches"
            return [head]
        first = self.first_bad_block
        head = "ledger verification FAILED"
        if first is not None:
            head += f": first bad block {first}"
        return [head] + [p.line() for p in self.problems]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["first_bad_block"] = self.first_bad_block
        return data


def _show(ranges: Sequence[tuple[int, int]]) -> str:
    parts = [str(a) if a == b else f"{a}-{b}" for a, b in ranges[:_SHOWN]]
    more = len(ranges) - _SHOWN
    return ", ".join(parts) + (f" and {more} more ranges" if more > 0 else "")


class _Ranges:
    """Sorted, disjoint, half-open id ranges, for 'is this id dropped' questions."""

    def __init__(self, ranges: Iterable[tuple[int, int]]) -> None:
        self._r = sorted(ranges)
        self._lo = [a for a, _ in self._r]

    def split(self, lo: int, hi: int) -> tuple[int, list[tuple[int, int]]]:
        """How many of [lo, hi) are covered, and the uncovered pieces."""
        covered = 0
        pieces: list[tuple[int, int]] = []
        i = max(bisect.bisect_right(self._lo, lo) - 1, 0)
        at = lo
        while at < hi and i < len(self._r):
            a, b = self._r[i]
            if b <= at:
                i += 1
                continue
            if a >= hi:
                break
            if a > at:
                pieces.append((at, a))
            start, end = max(a, at), min(b, hi)
            covered += end - start
            at = end
            i += 1
        if at < hi:
            pieces.append((at, hi))
        return covered, pieces

    def __contains__(self, x: int) -> bool:
        i = bisect.bisect_right(self._lo, x) - 1
        return i >= 0 and self._r[i][0] <= x < self._r[i][1]


class _Open:
    """An entry met by the id-ordered scan of the rows, being recomputed."""

    __slots__ = ("clipped", "dropped", "entry", "hasher", "missing", "next", "r", "ranges", "seen")

    def __init__(self, entry: Entry, from_id: int) -> None:
        self.entry = entry
        ranges = entry.ranges()
        # --since: ids below the scan's start were verified before; this entry's digest
        # cannot be recomputed from part of its rows, its ids are still checked.
        self.ranges = [(max(a, from_id), b) for a, b in ranges if b > from_id]
        self.clipped = self.ranges != ranges
        self.r = 0
        self.next = self.ranges[0][0] if self.ranges else _INF
        self.hasher = hashlib.sha256()
        self.seen = 0
        self.missing: list[tuple[int, int]] = []
        self.dropped = 0

    def skip_to(self, x: int, dropped: _Ranges) -> None:
        """Ids of this entry below ``x`` were not met: dropped by retention, or missing."""
        while self.next < x:
            end = min(x, self.ranges[self.r][1])
            covered, pieces = dropped.split(self.next, end)
            self.dropped += covered
            self.missing.extend(pieces)
            self._step(end)

    def take(self, digest: bytes) -> None:
        self.hasher.update(digest)
        self.seen += 1
        self._step(self.next + 1)

    def _step(self, to: int) -> None:
        self.next = to
        if to >= self.ranges[self.r][1]:
            self.r += 1
            self.next = self.ranges[self.r][0] if self.r < len(self.ranges) else _INF


def _merge(ranges: list[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    """Half-open ranges as merged inclusive ranges."""
    out: list[list[int]] = []
    for a, b in sorted(ranges):
        if out and a <= out[-1][1] + 1:
            out[-1][1] = max(out[-1][1], b - 1)
        else:
            out.append([a, b - 1])
    return tuple((a, b) for a, b in out)


class _Chain:
    """Which block an entry's xid belongs to."""

    def __init__(self, blocks: Sequence[Block]) -> None:
        self._lo = [b.xid_lo for b in blocks]
        self._blocks = list(blocks)

    def block_of(self, xid: int) -> int | None:
        i = bisect.bisect_right(self._lo, xid) - 1
        if i >= 0 and xid < self._blocks[i].xid_hi:
            return self._blocks[i].block_id
        return None


def _stream(
    conn: psycopg.Connection[Any], name: str, query: str, params: dict[str, Any]
) -> Iterator[tuple[Any, ...]]:
    with conn.cursor(name=name) as cur:
        cur.execute(query, params)
        while batch := cur.fetchmany(_FETCH):
            yield from batch


def _entries(
    conn: psycopg.Connection[Any], cursor: str, query: str, start: int
) -> Generator[Entry, None, None]:
    key = "from_xid" if query.endswith("xid") else "from_id"
    for row in _stream(conn, cursor, load_sql(query), {key: start}):
        yield Entry.from_row(row)


def verify(url: str, digest: Digest | None = None, since: int | None = None) -> VerifyReport:
    """Recompute rows -> entries -> blocks -> chain and compare with ``digest``.

    ``since``: a block already verified (its stored hash is trusted); blocks after it, the
    entries written since its bound, the rows they cover and the unsealed tail are checked.
    Rows without an entry are found among ids at or above the lowest id of those entries.
    """
    started = time.perf_counter()
    report = VerifyReport(from_block=(since or 0) + 1)
    with psycopg.connect(url) as conn:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        with conn.transaction():
            conn.execute("SET LOCAL work_mem = '64MB'")
            _verify_in(conn, report, digest, since)
    report.ok = not report.problems
    report.duration_s = time.perf_counter() - started
    return report


def _verify_in(
    conn: psycopg.Connection[Any],
    report: VerifyReport,
    digest: Digest | None,
    since: int | None,
) -> None:
    from_block = since if since is not None else 1
    blocks = [
        Block.from_row(r)
        for r in conn.execute(load_sql("ledger/blocks"), {"from_block": from_block})
    ]
    if since is not None:
        if not blocks or blocks[0].block_id != since:
            raise LedgerError(f"block {since} (--since) is not in the ledger")
        anchor: Block | None = blocks.pop(0)
    else:
        anchor = None
    chain = _Chain(blocks)
    from_xid = anchor.xid_hi if anchor else 0
    _check_chain(conn, report, blocks, anchor, digest)

    first = conn.execute(load_sql("ledger/first_id_after"), {"from_xid": from_xid}).fetchone()
    from_id = 0 if since is None else (first[0] if first and first[0] is not None else _INF)
    drop_entries = [Entry.from_row(r) for r in conn.execute(load_sql("ledger/drops"))]
    for d in drop_entries:
        if d.row_count is not None:
            report.drops += 1
            report.rows_dropped += d.row_count
    dropped = _Ranges(r for d in drop_entries if d.row_count is not None for r in d.ranges())
    if from_id < _INF:
        _check_rows(conn, report, chain, dropped, from_id)
    if any(p.kind in ("missing", "changed") for p in report.problems):
        unrecorded = [d for d in drop_entries if d.row_count is None]
        for d in unrecorded:
            report.problems.append(
                Problem(
                    "unrecorded",
                    chain.block_of(d.xid),
                    f"partition {d.partition} ({d.bounds}) was dropped before retention was due:"
                    " its rows were not recorded",
                    d.entry_id,
                )
            )


def _check_chain(
    conn: psycopg.Connection[Any],
    report: VerifyReport,
    blocks: list[Block],
    anchor: Block | None,
    digest: Digest | None,
) -> None:
    prev_hash = anchor.block_hash if anchor else GENESIS
    prev_id = anchor.block_id if anchor else 0
    prev_hi = anchor.xid_hi if anchor else 0
    computed: dict[int, bytes] = {}
    if anchor:
        computed[anchor.block_id] = anchor.block_hash
    entries = _entries(conn, "ledger_entries_by_xid", "ledger/entries_by_xid", prev_hi)
    pending = next(entries, None)
    for block in blocks:
        report.blocks += 1
        if block.block_id != prev_id + 1:
            report.problems.append(
                Problem(
                    "chain",
                    prev_id + 1,
                    f"missing: the chain goes from block {prev_id} to block {block.block_id}",
                )
            )
        if block.xid_lo != prev_hi:
            report.problems.append(
                Problem(
                    "chain",
                    block.block_id,
                    f"starts at xid {block.xid_lo}, the previous"
                    f" block ends at {prev_hi}: entries between are in no block",
                )
            )
        if block.prev_hash != prev_hash:
            report.problems.append(
                Problem(
                    "chain",
                    block.block_id,
                    "its previous hash is not the hash of the block before it",
                )
            )
        hashes: list[bytes] = []
        rows = 0
        while pending is not None and pending.xid < block.xid_hi:
            if pending.xid >= block.xid_lo:
                hashes.append(pending.hash())
                if pending.kind != "drop":
                    rows += pending.row_count or 0
            pending = next(entries, None)
        report.entries += len(hashes)
        if not hashes:
            report.problems.append(Problem("block", block.block_id, "holds no entry any more"))
            root = block.merkle_root
        else:
            root = merkle_root(hashes)
            if root != block.merkle_root or len(hashes) != block.entry_count:
                report.problems.append(
                    Problem(
                        "block",
                        block.block_id,
                        f"its entries ({len(hashes)}, sealed {block.entry_count}) do not give its"
                        " Merkle root: an entry was edited, added or removed",
                    )
                )
        if rows != block.row_count:
            report.problems.append(
                Problem(
                    "block",
                    block.block_id,
                    f"its entries count {rows} rows, it says {block.row_count}",
                )
            )
        mine = block.computed_hash(block.prev_hash, block.merkle_root)
        if mine != block.block_hash:
            report.problems.append(
                Problem("block", block.block_id, "its hash is not the hash of its contents")
            )
        prev_hash = block.computed_hash(prev_hash, root)
        computed[block.block_id] = prev_hash
        prev_id, prev_hi = block.block_id, block.xid_hi
    entries.close()
    report.last_block = prev_id or None
    if digest is not None:
        got = computed.get(digest.block_id)
        if got is None:
            report.problems.append(
                Problem(
                    "digest",
                    digest.block_id,
                    "the block the digest names is not in the"
                    " ledger (removed, or the digest is of another database)",
                )
            )
            report.digest_matched = False
        elif got.hex() != digest.block_hash.lower():
            report.problems.append(
                Problem(
                    "digest",
                    digest.block_id,
                    f"recomputed hash {got.hex()} is not the digest's {digest.block_hash}",
                )
            )
            report.digest_matched = False
        else:
            report.digest_matched = True


def _check_rows(
    conn: psycopg.Connection[Any],
    report: VerifyReport,
    chain: _Chain,
    dropped: _Ranges,
    from_id: int,
) -> None:
    entries = _entries(conn, "ledger_entries_by_id", "ledger/entries_by_id", from_id)
    pending = next(entries, None)
    active: list[_Open] = []
    orphans: list[tuple[int, int]] = []
    rows = _stream(conn, "ledger_rows", load_sql("ledger/rows_by_id"), {"from_id": from_id})
    for id_, tenant, decision, chash, score, details, took, at in rows:
        report.rows += 1
        while pending is not None and (pending.min_id or 0) <= id_:
            active.append(_Open(pending, from_id))
            pending = next(entries, None)
        owner = None
        for e in active:
            if e.next < id_:
                e.skip_to(id_, dropped)
            if e.next == id_ and owner is None:
                owner = e
        if owner is None:
            orphans.append((id_, id_ + 1))
        else:
            owner.take(row_digest(id_, tenant, decision, chash, score, details, took, at))
            if owner.next == _INF:
                _close(report, chain, owner)
                active.remove(owner)
        if len(active) > 1:
            for e in [e for e in active if e.next == _INF]:
                _close(report, chain, e)
                active.remove(e)
    while pending is not None:
        active.append(_Open(pending, from_id))
        pending = next(entries, None)
    entries.close()
    for e in active:
        e.skip_to(_INF, dropped)
        _close(report, chain, e)
    if orphans:
        report.problems.append(
            Problem(
                "unrecorded", None, "rows present without a ledger entry", None, _merge(orphans)
            )
        )


def _close(report: VerifyReport, chain: _Chain, e: _Open) -> None:
    entry = e.entry
    block = chain.block_of(entry.xid)
    if e.missing:
        report.problems.append(
            Problem(
                "missing",
                block,
                f"rows of entry {entry.entry_id} are missing (deleted without a recorded drop)",
                entry.entry_id,
                _merge(e.missing),
            )
        )
        return
    ranges = entry.ranges()
    total = sum(b - a for a, b in ranges)
    bounds = (ranges[0][0], ranges[-1][1] - 1) if ranges else (None, None)
    if entry.row_count != total or (entry.min_id, entry.max_id) != bounds:
        report.problems.append(
            Problem(
                "entry",
                block,
                f"entry {entry.entry_id} is inconsistent: its count or bounds do not match its ids",
                entry.entry_id,
            )
        )
        return
    if e.dropped or e.clipped:
        if e.seen:
            report.partial_entries += 1
        return
    if e.hasher.digest() != entry.rows_digest:
        report.problems.append(
            Problem(
                "changed",
                block,
                f"rows of entry {entry.entry_id} do not match its digest"
                " (changed, or the entry was edited)",
                entry.entry_id,
                _merge(ranges),
            )
        )
