"""The SHA-256 digest of a bulk-insert batch, computed as its rows stream into the COPY.

``ingest_batches.digest`` holds it, so that a retry with the same batch id can tell the same
rows (nothing to write) from different ones (:class:`acgs_db.errors.BatchConflictError`).
It is fed one checked row at a time, right before the row is sent: no second pass over the data
and no list of rows; encoded rows are gathered into a 64 KiB buffer between hash updates.

Encoding, version 1 (what :meth:`BatchDigest.add` appends, documented so that it can be
reproduced elsewhere). The hash starts with the header ``acgs_db batch digest v1\\n``; then
every row, in stream order, is its seven fields in this order: ``tenant_id``,
``constitutional_hash``, ``decision_id``, ``compliance_score``, ``validation_details``,
``processing_time_ms``, ``created_at``, each encoded as one of:

* ``N``: NULL (no payload). ``created_at`` given as ``None`` is encoded ``N``, *not* the server
  time that fills it, so a retry of the same records gives the same digest.
* ``T<n>:<bytes>``: text (``tenant_id``, ``decision_id``, ``constitutional_hash``): ``<n>`` is
  the decimal length of ``<bytes>``, the value's UTF-8 encoding.
* ``J<n>:<bytes>``: ``validation_details``: ``<bytes>`` are exactly the bytes the COPY sends
  (binary jsonb: version byte ``0x01``, then the JSON text as encoded once by the checks).
* ``D<text>;``: ``compliance_score`` as the exact decimal value given (a float's exact binary
  value, a Decimal as given) rounded half away from zero to 4 places, as ``numeric(5,4)``
  stores it, written with 4 decimals (``0.5000``; zero is always ``0.0000``).
* ``I<text>;``: ``processing_time_ms`` as a decimal integer.
* ``S<text>;``: ``created_at`` given as a datetime: microseconds since 1970-01-01 UTC as a
  decimal integer (the same instant in any time zone encodes alike).

Lengths and ``;`` terminators make the encoding unambiguous (no field value can run into the
next one); row boundaries need no marker since every row has the same seven fields.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

HEADER = b"acgs_db batch digest v1\n"
_FLUSH = 1 << 16
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_PLACES = Decimal("0.0001")
_CACHED = 4096  # distinct tenants remembered per batch


def score_text(score: float | Decimal) -> bytes:
    """The score as ``numeric(5,4)`` stores it, in 4 decimals (see the module's encoding)."""
    value = Decimal(score).quantize(_PLACES, rounding=ROUND_HALF_UP)
    if not value:
        return b"0.0000"  # -0 is stored as 0
    return str(value).encode()


def score_bytes(score: float | Decimal) -> bytes:
    """:func:`score_text`, fast for floats: ``%.4f`` rounds the exact binary value correctly,
    half to even, which differs from half away from zero only on exact ties; a float in
    [0, 1] is an exact tie only at an odd multiple of 1/32, which (with every multiple of
    1/32, zero and one among them) takes the exact path."""
    if type(score) is float and not (score * 32).is_integer():
        return b"%.4f" % score
    return score_text(score)


def _text(value: str) -> bytes:
    data = value.encode()
    return b"T%d:%s" % (len(data), data)


class BatchDigest:
    """SHA-256 over a batch's checked rows in the encoding of this module (version 1)."""

    __slots__ = ("_buffer", "_hash", "_texts", "rows")

    def __init__(self) -> None:
        self._hash = hashlib.sha256(HEADER)
        self._buffer = bytearray()
        # Tenants repeat within a batch: their encodings (with the hash's) are made once each.
        self._texts: dict[tuple[str, str], bytes] = {}
        self.rows = 0

    def add(self, row: tuple[Any, ...], created_at_given: bool) -> None:
        """Append a checked COPY row; ``created_at_given`` is False when the caller left
        ``created_at`` to the server (its row holds the server time, the digest ``N``)."""
        tenant, decision, chash, score, details, took, created_at = row
        texts = self._texts
        head = texts.get((tenant, chash))
        if head is None:
            head = _text(tenant) + _text(chash)
            if len(texts) < _CACHED:
                texts[tenant, chash] = head
        data = decision.encode()
        buffer = self._buffer
        buffer += b"%sT%d:%sD%s;%s%s%s" % (
            head,
            len(data),
            data,
            score_bytes(score),
            b"N" if details is None else b"J%d:%s" % (len(details), details),
            b"N" if took is None else b"I%d;" % took,
            b"S%d;" % ((created_at - _EPOCH) // _MICROSECOND) if created_at_given else b"N",
        )
        self.rows += 1
        if len(buffer) >= _FLUSH:
            self._hash.update(buffer)
            buffer.clear()

    def digest(self) -> bytes:
        """The 32-byte SHA-256 of the rows added so far."""
        self._hash.update(self._buffer)
        self._buffer.clear()
        return self._hash.digest()
