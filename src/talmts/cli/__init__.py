"""The ``talmts`` command: parses arguments and hands over to one sub-command module each.

Each sub-command lives in ``talmts/cli/<name>.py`` with ``add_arguments(parser)`` and ``run(args) -> int``.
Modules are imported only when their command runs, so ``talmts --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# command name -> (module under talmts.cli, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("demo", "the main job: synth data, prepare, train both streams, evaluate, detect, report"),
    "synth": ("synth", "generate the embedded synthetic untrimmed-video dataset"),
    "prepare": ("prepare", "decode videos into 10 fps frames and optical flow"),
    "train": ("train", "train one stream from a config"),
    "eval": ("eval_checkpoints", "sliding-window inference on the test split and the paper-style mAP table"),
    "detect": ("detect", "detect actions in a video: JSON, CSV, timeline picture and an HTML page"),
    "evaluate": ("score_detections", "score a detection file against ground truth (ActivityNet mAP)"),
    "bench": ("bench", "throughput, FLOPs and memory of the network"),
    "dataset-stats": ("dataset_stats", "clip counts of a dataset protocol from annotation files alone"),
    "backbone-check": ("backbone_check", "run the I3D classifier on a clip and print the top-5 Kinetics labels"),
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """All sub-commands; with ``only``, just that one's options are loaded (each command imports only what it
    needs, so e.g. ``talmts bench`` runs where PyAV is not installed)."""
    parser = argparse.ArgumentParser(prog="talmts", description="Temporal action localization with TAL-MTS.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module)
        if only is not None and name != only:
            continue
        mod = _load(module)
        if mod is not None:
            mod.add_arguments(p)
    return parser


def _load(module: str):  # noqa: ANN202 - returns a module or None
    try:
        return importlib.import_module(f"talmts.cli.{module}")
    except ModuleNotFoundError as e:
        if e.name == f"talmts.cli.{module}":
            return None
        raise


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(argv[0] if argv and argv[0] in COMMANDS else None)
    # Dotted overrides may follow options (`talmts train CFG --resume x train.epochs=5`); argparse alone would
    # reject positionals after an option, so the leftovers that look like key=value join args.overrides.
    args, extra = parser.parse_known_args(argv)
    if extra:
        stray = [e for e in extra if e.startswith("-") or "=" not in e]
        if stray or not isinstance(getattr(args, "overrides", None), list):
            parser.error(f"unrecognized arguments: {' '.join(stray or extra)}")
        args.overrides.extend(extra)
    if args.command is None:
        parser.print_help()
        return 2
    mod = _load(args._module)
    if mod is None:
        print(f"talmts {args.command}: not available in this build", file=sys.stderr)
        return 2
    return int(mod.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
