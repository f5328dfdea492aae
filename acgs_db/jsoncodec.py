"""The JSON codec of the package: checked documents encoded once as binary jsonb, and the
pool's jsonb/json codecs that send them untouched and read numbers exactly.

orjson does the common case; the standard library decides what orjson would write loosely or
refuse, so that both paths store and return the same values.
"""

from __future__ import annotations

import enum
import json
import uuid
from typing import Any

import orjson

from acgs_db.errors import InvalidRecordError

# Types orjson would write in its own way (datetimes, dataclasses, subclasses) are refused
# by it and decided by the standard library, which refuses them or writes plain JSON.
_ORJSON_STRICT = (
    orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_DATACLASS
    | orjson.OPT_PASSTHROUGH_SUBCLASS
)


class JsonDocument(bytes):
    """A value already checked and encoded as PostgreSQL's binary jsonb (version byte + UTF-8).

    The pool's jsonb codec sends it as it is, so a document is serialised exactly once.
    """


def check_json(field: str, value: object, max_bytes: int) -> JsonDocument | None:
    """Encode a JSON value once, refusing what is not JSON, what jsonb cannot hold (NUL)
    and what is larger than ``max_bytes``.

    orjson does the common case several times faster than the standard library; the standard
    library decides whatever orjson would accept loosely (NaN written as null) or refuses
    without it being invalid JSON (integers beyond 64 bits, str subclasses, deep nesting).
    UUIDs and Enum members are written as their string and value on either path.
    """
    if value is None:
        return None
    try:
        data = orjson.dumps(value, option=_ORJSON_STRICT)
    except TypeError:
        data = _stdlib_json(field, value)
    else:
        if b"null" in data:  # a null may be a NaN or an infinity orjson wrote as null
            _stdlib_json(field, value)
    if b"\\u0000" in data and _holds_nul(value):
        raise InvalidRecordError(field, "holds a \\u0000 character, which jsonb cannot store")
    if len(data) > max_bytes:
        raise InvalidRecordError(
            field, f"is {len(data)} bytes of JSON; the limit is {max_bytes} bytes"
        )
    return JsonDocument(b"\x01" + data)


def _stdlib_json(field: str, value: object) -> bytes:
    """Strict encoding by the standard library: no NaN, string keys only, valid Unicode."""
    try:
        text = json.dumps(
            value,
            ensure_ascii=False,
            allow_nan=False,
            separators=(",", ":"),
            default=_json_default,
        )
    except (TypeError, ValueError) as exc:
        raise InvalidRecordError(field, f"is not JSON: {exc}") from None
    except RecursionError:
        raise InvalidRecordError(field, "is not JSON: nested too deeply") from None
    if not _string_keys(value):
        raise InvalidRecordError(field, "is not JSON: object keys must be strings")
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidRecordError(field, f"is not valid Unicode text ({exc.reason})") from None


def _json_default(value: object) -> object:
    """What the standard library path writes for the types orjson writes natively: a UUID as
    its string, an Enum member as its value (so both paths store the same document)."""
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, enum.Enum):
        return value.value
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _string_keys(value: object) -> bool:
    if isinstance(value, dict):
        return all(isinstance(k, str) and _string_keys(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return all(_string_keys(v) for v in value)
    return True


def _holds_nul(value: object) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_holds_nul(k) or _holds_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_holds_nul(v) for v in value)
    return False


def encode_jsonb(value: Any) -> bytes:
    """Binary jsonb: a version byte and UTF-8 JSON; checked documents pass through untouched."""
    if type(value) is JsonDocument:
        return value
    return b"\x01" + json.dumps(value, allow_nan=False, separators=(",", ":")).encode()


# Every digit maps to "0", everything else to " ": a run of 19 zeros marks a number orjson
# might read into a float (it does so beyond 64-bit integers, silently).
_DIGIT_RUNS = bytes(ord("0") if chr(b).isdigit() and b < 128 else ord(" ") for b in range(256))
_LONG_NUMBER = b"0" * 19


def decode_json(data: bytes) -> Any:
    """JSON text to Python, exactly: orjson (about 4x faster here), or the standard library
    when the text holds a digit run long enough to be an integer beyond 64 bits (orjson would
    return a float), or a number orjson refuses (beyond float range)."""
    if _LONG_NUMBER not in data.translate(_DIGIT_RUNS):
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass
    return json.loads(data)


def decode_jsonb(data: bytes) -> Any:
    """Binary jsonb (a version byte, then JSON text) to Python."""
    return decode_json(data[1:])


def encode_json(value: Any) -> bytes:
    return json.dumps(value, allow_nan=False, separators=(",", ":")).encode()
