"""Declared config fields: each default says where it comes from and, for a number, which values are allowed.

``epochs: int = opt(25, "paper", ">= 1")`` declares a dataclass field whose default is the paper's and whose value
must be at least 1. :func:`range_errors` walks a tree of such dataclasses and checks every declared range in one
loop, so a new field gets its check by being declared, not by a line added elsewhere.

Ranges are written ``>= a``, ``> a``, ``<= b``, ``< b`` or as intervals ``[a, b]``, ``(a, b]``, ``[a, b)``,
``(a, b)``. ``None`` (an optional field left unset) is always allowed; a list of numbers is checked item by item.
"""

from __future__ import annotations

import dataclasses
import math
import reprlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

Source = Literal["paper", "AFSD", "talmts"]
SOURCES: dict[str, str] = {
    "paper": "the TAL-MTS paper's value",
    "AFSD": "AFSD's value (the paper builds on AFSD and is silent here)",
    "talmts": "talmts' own choice (docs/DESIGN.md says why where it matters)",
}


@dataclass(frozen=True)
class Range:
    """A closed, open or half-open interval; None on a side means unbounded there."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    text: str = ""

    def __contains__(self, value: float) -> bool:
        try:
            if not math.isfinite(value):
                return False
        except OverflowError:  # an integer beyond any float is in no range
            return False
        if self.lo is not None and (value <= self.lo if self.lo_open else value < self.lo):
            return False
        return not (self.hi is not None and (value >= self.hi if self.hi_open else value > self.hi))


def parse_range(text: str) -> Range:
    """``">= 1"``, ``"> 0"``, ``"<= 5"``, ``"[0, 1]"``, ``"(0, 1]"``, ... -> :class:`Range`."""
    t = text.strip()
    for op, lo_open in ((">=", False), (">", True)):
        if t.startswith(op):
            return Range(lo=float(t[len(op) :]), lo_open=lo_open, text=t)
    for op, hi_open in (("<=", False), ("<", True)):
        if t.startswith(op):
            return Range(hi=float(t[len(op) :]), hi_open=hi_open, text=t)
    if t[:1] in "[(" and t[-1:] in "])" and "," in t:
        lo, hi = (float(x) for x in t[1:-1].split(","))
        return Range(lo, hi, lo_open=t[0] == "(", hi_open=t[-1] == ")", text=t)
    raise ValueError(f"range {text!r}: write '>= a', '> a', '<= b', '< b' or an interval like '[a, b)'")


def opt(default: Any, source: Source, allowed: str | None = None) -> Any:
    """A dataclass field with ``default`` (a list is copied per instance), its ``source`` and, for numbers, the
    ``allowed`` range (see the module doc)."""
    if source not in SOURCES:
        raise ValueError(f"source {source!r}: use one of {list(SOURCES)}")
    metadata = {"source": source, "range": parse_range(allowed) if allowed else None}
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


_SHOWN = reprlib.Repr()
for _name, _limit in {
    "maxlevel": 2,
    "maxdict": 3,
    "maxlist": 4,
    "maxtuple": 4,
    "maxstring": 60,
    "maxother": 60,
}.items():
    setattr(_SHOWN, _name, _limit)


def shown(value: Any) -> str:
    """``repr(value)`` cut to a few dozen characters: what an error message may quote of a value from a file (a
    YAML alias bomb expands to gigabytes when printed whole; an integer of 5,000 digits has no repr at all)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 200:
        return f"<an integer of about {int(value.bit_length() * math.log10(2)) + 1} digits>"
    try:
        return _SHOWN.repr(value)
    except (ValueError, RecursionError):
        return f"<a {type(value).__name__}>"


def declared_fields(tree: Any, prefix: str = "") -> Iterator[tuple[str, Any, dataclasses.Field]]:
    """Every leaf field of a dataclass tree as (dotted key, value, field), in declaration order."""
    for f in dataclasses.fields(tree):
        value = getattr(tree, f.name)
        if dataclasses.is_dataclass(value):
            yield from declared_fields(value, f"{prefix}{f.name}.")
        else:
            yield f"{prefix}{f.name}", value, f


def range_errors(tree: Any) -> list[str]:
    """One message per value outside its declared range: the key, the value and the allowed range."""
    errors = []
    for key, value, f in declared_fields(tree):
        allowed: Range | None = f.metadata.get("range")
        if allowed is None or value is None:
            continue
        items = _numbers(value, key)
        for item_key, item in items:
            if item not in allowed:
                errors.append(f"{item_key}={shown(item)} is out of range: it must be {allowed.text}")
    return errors


def _numbers(value: Any, key: str) -> list[tuple[str, float]]:
    """The numbers in a value: itself, or the items of a (nested) list, each with its key."""
    if isinstance(value, list | tuple):
        out = []
        for i, v in enumerate(value):
            out += _numbers(v, f"{key}[{i}]")
        return out
    if isinstance(value, int | float) and not isinstance(value, bool):
        return [(key, value)]
    return []
