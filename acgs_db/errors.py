"""Exceptions of acgs-db: every error a caller should handle derives from AcgsDbError."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


class AcgsDbError(Exception):
    """Base class of the errors raised by acgs-db."""


class ConfigurationError(AcgsDbError):
    """A setting is malformed or a required program or extension is missing."""


class InvalidRecordError(AcgsDbError, ValueError):
    """A record failed validation; nothing of the call that carried it was written.

    ``field`` names the offending field and ``reason`` says what is wrong with it;
    ``index`` is the record's position in a bulk insert (``None`` for single records);
    ``committed`` counts rows of earlier chunks already committed (only with ``commit_every``).
    """

    def __init__(
        self, field: str, reason: str, index: int | None = None, committed: int = 0
    ) -> None:
        self.field = field
        self.reason = reason
        self.index = index
        self.committed = committed
        super().__init__(self._message())

    def _message(self) -> str:
        where = f"record {self.index}: " if self.index is not None else ""
        after = (
            f" ({self.committed} rows of earlier chunks were committed)" if self.committed else ""
        )
        return f"{where}{self.field}: {self.reason}{after}"

    def at(self, index: int, committed: int = 0) -> InvalidRecordError:
        """A copy of this error naming the record's position (and rows already committed)."""
        return InvalidRecordError(self.field, self.reason, index, committed)


class BulkInsertError(AcgsDbError):
    """A bulk insert failed on the server.

    ``committed`` counts the rows that were durably written before the failure: always 0
    for an all-or-nothing call, the rows of already committed chunks otherwise.
    """

    def __init__(self, message: str, committed: int = 0) -> None:
        self.committed = committed
        super().__init__(f"{message} ({committed} rows committed before the failure)")


class BatchConflictError(AcgsDbError):
    """A bulk insert named a batch id that was committed before with different rows.

    Nothing of the call was written. ``batch_id`` is the id; a retry must send the same
    records (in the same order), and new rows need a new id.
    """

    def __init__(self, batch_id: str) -> None:
        self.batch_id = batch_id
        super().__init__(
            f"batch {batch_id!r} was committed before with different rows; nothing was "
            "written (a retry must send the same records; new rows need a new batch id)"
        )


class SchemaNotReadyError(AcgsDbError):
    """The database lacks the acgs-db schema: run ``acgs-db migrate`` (alembic upgrade head)."""


class TenantScopeError(AcgsDbError):
    """A tenant-scoped repository was asked about a tenant its login is not bound to (or its
    login is bound to none). Row-level security would show such a call nothing."""


class WriterOverloaded(AcgsDbError):
    """The audit writer's queue holds ``max_queue`` records and ``write(..., wait=False)``
    asked not to wait: the record was not queued (nothing is written)."""


class WriterClosedError(AcgsDbError):
    """The audit writer is closed or closing: the record was not queued (nothing is written)."""


class AuditWriteError(AcgsDbError):
    """A record's batch failed at the server.

    ``maybe_committed`` False: the record is not stored and may be written again.
    True: the outcome could not be settled (the server stayed unreachable while the writer
    retried); the record is stored exactly when ``batch_id`` has a row in ``ingest_batches``,
    and never twice.
    """

    def __init__(self, message: str, *, maybe_committed: bool, batch_id: str) -> None:
        self.maybe_committed = maybe_committed
        self.batch_id = batch_id
        outcome = (
            f"it may have been committed: batch {batch_id} is in ingest_batches exactly when it was"
            if maybe_committed
            else "it was not committed"
        )
        super().__init__(f"{message}; {outcome}")


@contextlib.contextmanager
def reraised_as(
    kind: type[AcgsDbError], action: str, *caught: type[BaseException]
) -> Iterator[None]:
    """Turn the ``caught`` exceptions (a driver's server errors) into ``kind`` with one line,
    ``<action> failed: <the first line of the server's message>``, the original as its cause."""
    try:
        yield
    except caught as exc:
        lines = str(exc).strip().splitlines()
        raise kind(f"{action} failed: {lines[0] if lines else type(exc).__name__}") from exc
