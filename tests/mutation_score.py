"""Per-module score of a `make mutation` run: reads mutmut's results under mutants/ and prints a markdown table.

killed: a fast-tier test failed (or the mutant hung past mutmut's time limit); survived: every test that runs the
mutated function passed, or no fast-tier test runs it at all; equivalent: listed with its reason in
tests/mutation_equivalent.txt (a mutant that changes no result, e.g. a bound that is never reached). The score
is killed / (killed + survived). ``--survivors`` lists the survivors by name, for ``mutmut show NAME``.
``--no-equivalents`` counts the listed equivalents as survivors: a lower bound for a module whose code changed
since its equivalents were argued (mutant numbers shift when a function is edited).

    python tests/mutation_score.py [--survivors] [--no-equivalents] [MODULE_PREFIX ...]
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KILLED = {1, 3, 36, -24, 24, 152, 255, -11, -9}  # test failure, pytest internal error, timeouts, crashes
SURVIVED = {0, 5, 33}  # tests passed; no test runs the function


def equivalent_mutants() -> dict[str, str]:
    out = {}
    for line in (ROOT / "tests" / "mutation_equivalent.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, reason = line.partition(" ")
            out[name] = reason.strip()
    return out


def main(argv: list[str]) -> int:
    show = "--survivors" in argv
    prefixes = [a for a in argv if not a.startswith("--")]
    equivalent = {} if "--no-equivalents" in argv else equivalent_mutants()
    seen: set[str] = set()
    rows, survivors = [], []
    for meta in sorted((ROOT / "mutants" / "src").rglob("*.py.meta")):
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        if not codes:
            continue
        module = next(iter(codes)).split(".x_")[0].split(".xǁ")[0]
        if prefixes and not any(module.startswith(p) for p in prefixes):
            continue
        count = Counter()
        for name, code in codes.items():
            seen.add(name)
            if name in equivalent:
                count["equivalent"] += 1
            elif code in KILLED:
                count["killed"] += 1
            elif code in SURVIVED:
                count["survived"] += 1
                survivors.append(name)
            else:
                count["not run"] += 1
        tried = count["killed"] + count["survived"]
        score = f"{100 * count['killed'] / tried:.1f} %" if tried else "-"
        rows.append((module, count["killed"], count["survived"], count["equivalent"], count["not run"], score))
    print("| module | killed | survived | equivalent | not run | score |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print("| " + " | ".join(str(x) for x in r) + " |")
    stale = sorted(n for n in equivalent if n not in seen and (not prefixes or n.startswith(tuple(prefixes))))
    if stale:
        print(f"\nlisted as equivalent but no longer generated (the code moved; re-check): {', '.join(stale)}")
    if show:
        print("\nsurvivors:\n" + "\n".join(survivors))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
