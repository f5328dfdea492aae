"""ValidationRecord and the checks every incoming value passes (pure Python, no server)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from acgs_db import CONSTITUTIONAL_HASH, InvalidRecordError
from acgs_db.jsoncodec import JsonDocument
from acgs_db.records import Limits, ValidationRecord, copy_row

LIMITS = Limits(
    max_details_bytes=1024, max_processing_time_ms=86_400_000, max_clock_skew=timedelta(minutes=5)
)
NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def test_a_record_is_an_immutable_tuple_with_defaults() -> None:
    record = ValidationRecord("t", "d", 0.5)
    assert record.constitutional_hash == CONSTITUTIONAL_HASH
    assert record.created_at is None and record.validation_details is None
    with pytest.raises(AttributeError):
        record.tenant_id = "other"  # type: ignore[misc]


def test_a_good_record_becomes_a_copy_row() -> None:
    row = copy_row(ValidationRecord("t", "d", Decimal("0.9"), {"k": "é"}, 12, NOW), LIMITS, NOW)
    assert row[:4] == ("t", "d", CONSTITUTIONAL_HASH, Decimal("0.9"))
    assert isinstance(row[4], JsonDocument)
    assert row[4] == b'\x01{"k":"\xc3\xa9"}'
    assert row[5:] == (12, NOW)


def test_a_missing_created_at_takes_the_server_time() -> None:
    assert copy_row(ValidationRecord("t", "d", 1), LIMITS, NOW)[6] == NOW


BAD = [
    (
        "constitutional_hash",
        ValidationRecord("t", "d", 0.5, constitutional_hash="0" * 16),
        "must be",
    ),
    ("compliance_score", ValidationRecord("t", "d", 1.0001), "[0, 1]"),
    ("compliance_score", ValidationRecord("t", "d", -0.1), "[0, 1]"),
    ("compliance_score", ValidationRecord("t", "d", float("nan")), "[0, 1]"),
    ("compliance_score", ValidationRecord("t", "d", float("inf")), "[0, 1]"),
    ("compliance_score", ValidationRecord("t", "d", Decimal("NaN")), "[0, 1]"),
    ("compliance_score", ValidationRecord("t", "d", Decimal("sNaN")), "[0, 1]"),
    ("compliance_score", ValidationRecord("t", "d", True), "number"),
    ("compliance_score", ValidationRecord("t", "d", "0.5"), "number"),  # type: ignore[arg-type]
    ("processing_time_ms", ValidationRecord("t", "d", 0.5, None, -1), "negative"),
    ("processing_time_ms", ValidationRecord("t", "d", 0.5, None, 10**12), "implausible"),
    ("processing_time_ms", ValidationRecord("t", "d", 0.5, None, 1.5), "integer"),  # type: ignore[arg-type]
    ("processing_time_ms", ValidationRecord("t", "d", 0.5, None, True), "integer"),
    ("tenant_id", ValidationRecord("", "d", 0.5), "empty"),
    ("tenant_id", ValidationRecord("x" * 51, "d", 0.5), "limit is 50"),
    ("tenant_id", ValidationRecord("a\x00b", "d", 0.5), "NUL"),
    ("tenant_id", ValidationRecord("\udc00", "d", 0.5), "Unicode"),
    ("tenant_id", ValidationRecord(42, "d", 0.5), "string"),  # type: ignore[arg-type]
    ("decision_id", ValidationRecord("t", "x" * 101, 0.5), "limit is 100"),
    ("validation_details", ValidationRecord("t", "d", 0.5, {1, 2}), "not JSON"),
    ("validation_details", ValidationRecord("t", "d", 0.5, {"x": object()}), "not JSON"),
    ("validation_details", ValidationRecord("t", "d", 0.5, {"x": float("nan")}), "not JSON"),
    ("validation_details", ValidationRecord("t", "d", 0.5, {"x": "a\x00b"}), "u0000"),
    ("validation_details", ValidationRecord("t", "d", 0.5, {"a\x00": 1}), "u0000"),
    ("validation_details", ValidationRecord("t", "d", 0.5, {"x": "\ud800"}), "Unicode"),
    ("validation_details", ValidationRecord("t", "d", 0.5, {"x": "y" * 2000}), "limit is 1024"),
    ("created_at", ValidationRecord("t", "d", 0.5, None, 1, datetime(2026, 1, 1)), "naive"),
    ("created_at", ValidationRecord("t", "d", 0.5, None, 1, NOW + timedelta(minutes=6)), "future"),
    ("created_at", ValidationRecord("t", "d", 0.5, None, 1, "2026-01-01"), "datetime"),  # type: ignore[arg-type]
]


@pytest.mark.parametrize(("field", "record", "words"), BAD)
def test_bad_values_name_the_field_and_the_reason(
    field: str, record: ValidationRecord, words: str
) -> None:
    with pytest.raises(InvalidRecordError) as caught:
        copy_row(record, LIMITS, NOW)
    assert caught.value.field == field
    assert words in caught.value.reason
    assert str(caught.value).startswith(f"{field}: ")


def test_a_backslash_before_u0000_in_text_is_not_a_nul() -> None:
    row = copy_row(ValidationRecord("t", "d", 0.5, {"x": "\\u0000"}), LIMITS, NOW)
    assert row[4] == b'\x01{"x":"\\\\u0000"}'


def test_timestamps_in_any_zone_and_within_the_skew_are_accepted() -> None:
    india = timezone(timedelta(hours=5, minutes=30))
    when = (NOW + timedelta(minutes=4)).astimezone(india)
    assert copy_row(ValidationRecord("t", "d", 0, None, 0, when), LIMITS, NOW)[6] == when


def test_the_error_names_the_record_position_in_a_batch() -> None:
    error = InvalidRecordError("compliance_score", "must lie in [0, 1]").at(41)
    assert error.index == 41
    assert str(error) == "record 41: compliance_score: must lie in [0, 1]"


def test_anything_but_a_record_is_refused() -> None:
    with pytest.raises(InvalidRecordError, match="ValidationRecord"):
        copy_row(("t", "d", CONSTITUTIONAL_HASH, 0.5, None, 1, NOW), LIMITS, NOW)  # type: ignore[arg-type]
