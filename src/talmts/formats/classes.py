"""Class lists: reading the files that fix a class order, and choosing a class map for an annotation file."""

from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path

from talmts.formats.common import AMBIGUOUS, read_text
from talmts.schema import ClassMap, SchemaError

# The 20 THUMOS14 detection classes in the order of "Class Index_Detection.txt" (also alphabetical). AFSD maps them
# to 1..20 in this order; thumos14_test_groundtruth.csv and ActionFormer's label_id use the same order from 0.
THUMOS14_CLASSES: tuple[str, ...] = (
    "BaseballPitch",
    "BasketballDunk",
    "Billiards",
    "CleanAndJerk",
    "CliffDiving",
    "CricketBowling",
    "CricketShot",
    "Diving",
    "FrisbeeCatch",
    "GolfSwing",
    "HammerThrow",
    "HighJump",
    "JavelinThrow",
    "LongJump",
    "PoleVault",
    "Shotput",
    "SoccerPenalty",
    "TennisSwing",
    "ThrowDiscus",
    "VolleyballSpiking",
)


def read_class_list(path: str | Path) -> ClassMap:
    """Read a class order file.

    Accepted layouts: THUMOS ``Class Index_Detection.txt`` ("<idx> <Name>" lines, file order kept), ActivityNet
    ``action_name.txt`` (one name a line) and ``action_name.csv`` (header ``action``, one name a row).
    """
    path = Path(path)
    text = read_text(path)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if path.suffix.lower() == ".csv":
        rows = list(csv.reader(lines))
        if not rows or rows[0] != ["action"]:
            raise SchemaError(str(path), "line 1", "header", "expected the header 'action'")
        names = [r[0].strip() for r in rows[1:]]
    else:
        names = []
        for i, ln in enumerate(lines):
            head, _, rest = ln.partition(" ")
            # "<number> <name>" -> name; a plain name (which may contain spaces) stays whole.
            names.append(rest.strip() if head.isdigit() and rest.strip() else ln)
            if not names[-1]:
                raise SchemaError(str(path), f"line {i + 1}", "name", "empty class name")
    if AMBIGUOUS in names:
        raise SchemaError(str(path), AMBIGUOUS, "name", "'Ambiguous' is not an action class", "remove that line")
    try:
        return ClassMap(tuple(names))
    except ValueError as e:
        raise SchemaError(str(path), "-", "name", str(e), "each class name once") from None


def check_labels(
    labels: Iterable[tuple[str, str]], classes: ClassMap | None, *, file: str, fallback: Iterable[str] = ()
) -> ClassMap:
    """Return the class map for an annotation file and check every ``(record, label)`` against it.

    ``classes`` given: every label must be in it. Otherwise the map is ``fallback`` (a class list the file carries,
    e.g. an ActivityNet taxonomy) when non-empty, else the sorted unique labels. "Ambiguous" is never a class.
    """
    pairs = [(r, lab) for r, lab in labels if lab != AMBIGUOUS]
    if classes is None:
        fallback = tuple(fallback)
        if not fallback:
            return ClassMap.from_labels(lab for _, lab in pairs)
        classes = ClassMap(fallback)
    for record, label in pairs:
        if label not in classes:
            raise SchemaError(
                file,
                record,
                "label",
                f"label {label!r} is not in the class map ({len(classes)} classes)",
                "pass the right class list or fix the label",
            )
    return classes
