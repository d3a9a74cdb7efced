"""The one rule for subset names, used for the names in annotation files, in configs and on the command line.

Real files spell their splits in several ways (ActivityNet: ``training``/``validation``/``testing``; ActionFormer's
THUMOS14: ``Validation``/``Test``; hand-written files: ``train``, ``val``, ...). Every name talmts reads, wherever it
comes from, goes through :func:`canonical_subset`, so ``data.test_subset: testing`` finds the videos a file calls
``Test``. Case and surrounding spaces do not matter; the canonical names are ``train``, ``validation``, ``test``.
"""

from __future__ import annotations

SUBSETS = ("train", "validation", "test")

SUBSET_ALIASES: dict[str, str] = {
    "train": "train",
    "training": "train",
    "val": "validation",
    "valid": "validation",
    "validation": "validation",
    "test": "test",
    "testing": "test",
}


def canonical_subset(value: object) -> str | None:
    """The canonical name of a subset spelling (``Training`` -> ``train``), or None for an unknown name."""
    return SUBSET_ALIASES.get(str(value).strip().lower())


def subset_help() -> str:
    """The accepted spellings, for error messages."""
    spellings = ", ".join(
        f"{canon} ({'/'.join(a for a, c in SUBSET_ALIASES.items() if c == canon)})" for canon in SUBSETS
    )
    return f"subsets are {spellings}; case does not matter"
