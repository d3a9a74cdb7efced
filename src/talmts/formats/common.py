"""Helpers shared by the readers and writers: strict JSON loading, typed field access.

Every failure becomes a :class:`SchemaError` that names the file, the record and the field.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from json.decoder import scanstring
from pathlib import Path
from typing import Any, TypeVar

from talmts.schema import SchemaError

AMBIGUOUS = "Ambiguous"  # THUMOS14's label for unclear instances; never one of the action classes
T = TypeVar("T")


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
    with _json_errors(path):
        return json.loads(text, object_pairs_hook=_no_duplicates)


@contextmanager
def _json_errors(path: Path) -> Iterator[None]:
    """Every way parsing JSON fails, as a SchemaError naming the file (and the line where there is one)."""
    try:
        yield
    except SchemaError:  # a record that ``convert`` refused (load_json_streamed): already names what is wrong
        raise
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


_WHITESPACE = re.compile(r"[ \t\n\r]*")
_CHECKED = json.JSONDecoder(object_pairs_hook=_no_duplicates)  # small members: duplicated keys are errors
_PLAIN = json.JSONDecoder()  # one video's value: parsed at C speed (inside it, as json itself, the last key wins)


def load_json_streamed(
    path: str | Path, member: str, convert: Callable[[str, Any], T]
) -> tuple[dict[str, Any], dict[str, T] | None]:
    """A JSON object file with one large member (``results`` of a detection file, ``database`` of a ground-truth
    file: video id -> value), read so that only one video's parsed value exists at a time.

    Returns the other members as :func:`load_json` parses them and ``{video: convert(video, value)}``, each value
    handed to ``convert`` as soon as it is parsed (a 5-million-detection file never becomes one tree of dicts). When
    the top level is not an object or ``member`` is absent or not an object, returns (the whole file as load_json
    parses it, None). A video id listed twice, like a key twice at the top level, is an error.
    """
    path = Path(path)
    text = read_text(path)
    with _json_errors(path):
        pos = _skip(text, 0)
        if not text.startswith("{", pos):
            return json.loads(text, object_pairs_hook=_no_duplicates), None
        top: dict[str, Any] = {}
        streamed: dict[str, T] | None = None

        def take(key: str, pos: int) -> int:
            nonlocal streamed
            if key in top or (key == member and streamed is not None):
                raise _DuplicateKey(key)
            if key == member and text.startswith("{", pos):
                streamed = {}

                def convert_one(video: str, pos: int) -> int:
                    if video in streamed:  # type: ignore[operator]
                        raise _DuplicateKey(video)
                    value, end = _PLAIN.raw_decode(text, pos)
                    streamed[video] = convert(video, value)  # type: ignore[index]
                    return end

                return _members(text, pos, convert_one)
            top[key], end = _CHECKED.raw_decode(text, pos)
            return end

        end = _skip(text, _members(text, pos, take))
        if end != len(text):
            raise json.JSONDecodeError("Extra data", text, end)
    return top, streamed


def _skip(text: str, pos: int) -> int:
    return _WHITESPACE.match(text, pos).end()  # type: ignore[union-attr]


def _members(text: str, pos: int, take: Callable[[str, int], int]) -> int:
    """Walk the object starting at ``text[pos] == "{"``: for each member, ``take(key, start of its value)``
    returns where the value ends. Returns the position after the closing brace."""
    pos = _skip(text, pos + 1)
    if text.startswith("}", pos):
        return pos + 1
    while True:
        if not text.startswith('"', pos):
            raise json.JSONDecodeError("Expecting property name enclosed in double quotes", text, pos)
        key, pos = scanstring(text, pos + 1)
        pos = _skip(text, pos)
        if not text.startswith(":", pos):
            raise json.JSONDecodeError("Expecting ':' delimiter", text, pos)
        pos = _skip(text, take(key, _skip(text, pos + 1)))
        if text.startswith(",", pos):
            pos = _skip(text, pos + 1)
        elif text.startswith("}", pos):
            return pos + 1
        else:
            raise json.JSONDecodeError("Expecting ',' delimiter", text, pos)


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
