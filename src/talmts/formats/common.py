"""Helpers shared by the readers and writers: strict JSON loading, typed field access.

Every failure becomes a :class:`SchemaError` that names the file, the record and the field.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from talmts.schema import SchemaError

AMBIGUOUS = "Ambiguous"  # THUMOS14's label for unclear instances; never one of the action classes


class _DuplicateKey(Exception):
    def __init__(self, key: str):
        self.key = key


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        for k, _ in pairs:
            if k in seen:
                raise _DuplicateKey(k)
            seen.add(k)
    return out


def read_text(path: str | Path, *, encoding: str = "utf-8") -> str:
    """A text file's contents; a missing file, a folder or bytes that are not UTF-8 become a SchemaError."""
    path = Path(path)
    try:
        return path.read_text(encoding=encoding)
    except FileNotFoundError:
        raise SchemaError(str(path), "-", "-", "file not found", "check the path") from None
    except IsADirectoryError:
        raise SchemaError(str(path), "-", "-", "is a folder, not a file", "give the file's path") from None
    except UnicodeDecodeError as e:
        raise SchemaError(
            str(path), f"byte {e.start}", "-", f"not UTF-8 text ({e.reason})", "save the file as UTF-8"
        ) from None


def read_csv(path: str | Path) -> tuple[list[str], list[dict[str, str]]]:
    """(header, rows) of a CSV file (a BOM is dropped); a short row's missing cells read as empty strings."""
    path = Path(path)
    text = read_text(path, encoding="utf-8-sig")
    reader = csv.DictReader(io.StringIO(text, newline=""), restval="")
    try:
        header = list(reader.fieldnames or [])
        rows = list(reader)
    except csv.Error as e:
        raise SchemaError(str(path), f"line {reader.line_num}", "-", f"not a valid CSV: {e}", "fix the row") from None
    return header, rows


def load_json(path: str | Path) -> Any:
    """Parse a JSON file; duplicated keys (e.g. a video id listed twice) are an error, not a silent overwrite."""
    path = Path(path)
    text = read_text(path)
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates)
    except RecursionError:
        raise SchemaError(str(path), "-", "-", "nested too deeply", "check the file's structure") from None
    except _DuplicateKey as e:
        raise SchemaError(
            str(path), e.key, "video id", "key appears twice in one object", "each video id must be unique"
        ) from None
    except json.JSONDecodeError as e:
        raise SchemaError(str(path), f"line {e.lineno}", "-", f"not valid JSON: {e.msg}", "fix the syntax") from None
    except ValueError:  # an integer of more than 4,300 digits: Python refuses to convert it (sys.int_info)
        raise SchemaError(
            str(path), "-", "-", "holds an integer of more than 4,300 digits", "no field of talmts' files needs one"
        ) from None


def require(obj: Any, key: str, *, file: str, record: str, kind: type | tuple[type, ...] | None = None) -> Any:
    """``obj[key]`` with a SchemaError (not a KeyError) when it is missing or has the wrong type."""
    if not isinstance(obj, Mapping):
        raise SchemaError(file, record, key, f"expected an object, got {type(obj).__name__}")
    if key not in obj:
        raise SchemaError(file, record, key, "missing key", f"add {key!r} to the record")
    value = obj[key]
    if kind is not None and not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise SchemaError(file, record, key, f"expected {names}, got {type(value).__name__} {value!r}")
    return value


def as_float(value: Any, *, file: str, record: str, field_name: str) -> float:
    """A finite float from a number or a numeric string (AFSD's thumos_gt.json stores times as strings)."""
    if isinstance(value, bool):
        raise SchemaError(file, record, field_name, f"expected a number, got {value!r}")
    try:
        out = float(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: an integer beyond any float
        raise SchemaError(file, record, field_name, f"expected a number, got {value!r}") from None
    if not math.isfinite(out):
        raise SchemaError(file, record, field_name, f"{value!r} is not finite", "use a finite number")
    return out


def parse_pair(value: Any, *, file: str, record: str, field_name: str = "segment") -> tuple[float, float]:
    """``[start, end]`` as two floats."""
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise SchemaError(file, record, field_name, f"expected [start, end], got {value!r}")
    return (
        as_float(value[0], file=file, record=record, field_name=field_name),
        as_float(value[1], file=file, record=record, field_name=field_name),
    )
