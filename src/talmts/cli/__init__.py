"""The ``talmts`` command: parses arguments and hands over to one sub-command module each.

Each sub-command lives in ``talmts/cli/<name>.py`` with ``add_arguments(parser)`` and ``run(args) -> int``.
Modules are imported only when their command runs, so ``talmts --help`` stays fast.

Errors are reported here, once for every command: see :func:`run_reporting_errors`. A command's ``run`` lets
them raise.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import warnings
from collections.abc import Callable
from types import ModuleType

from talmts.errors import TalmtsError

# command name -> (module under talmts.cli, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "init": ("init", "write a commented config for your own dataset (annotation file + videos)"),
    "demo": ("demo", "the main job: synth data, prepare, train both streams, evaluate, detect, report"),
    "synth": ("synth", "generate the embedded synthetic untrimmed-video dataset"),
    "prepare": ("prepare", "decode videos into 10 fps frames and optical flow"),
    "prepare-merge": ("prepare_merge", "after all `prepare --shard K/N` runs: check them, rebuild video_info.csv"),
    "train": ("train", "train one stream from a config"),
    "extract-features": ("extract_features", "cache the frozen I3D's features (head-only training, snippet files)"),
    "eval": ("eval_checkpoints", "sliding-window inference on the test split and the paper-style mAP table"),
    "detect": ("detect", "detect actions in a video: JSON, CSV, timeline picture and an HTML page"),
    "export": ("export", "a trained network as an ONNX or TorchScript graph plus the JSON a runtime needs"),
    "stream": ("stream", "detect actions as a video plays (file, pipe, URL, camera): one JSON line per detection"),
    "evaluate": ("evaluate", "score a detection file against ground truth (ActivityNet mAP)"),
    "view": ("view", "a static results site: per-video timelines, player and DETAD's error diagnosis"),
    "bench": ("bench", "throughput, FLOPs and memory of the network"),
    "dataset-stats": ("dataset_stats", "clip counts of a dataset protocol from annotation files alone"),
    "backbone-check": ("backbone_check", "run the I3D classifier on a clip and print the top-5 Kinetics labels"),
    "convert-checkpoint": ("convert_checkpoint", "rewrite a checkpoint of an older talmts in the current safe format"),
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """All sub-commands; with ``only``, just that one's options are loaded (each command imports only what it
    needs, so e.g. ``talmts bench`` runs where PyAV is not installed)."""
    parser = argparse.ArgumentParser(
        prog="talmts",
        description="Temporal action localization with TAL-MTS.",
        epilog="Errors in the input print as one line (exit code 2); --debug (anywhere on the line) shows the "
        "traceback of any error instead.",
    )
    parser.add_argument("--debug", action="store_true", help="let errors raise, with their traceback")
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


def _load(module: str) -> ModuleType | None:
    try:
        return importlib.import_module(f"talmts.cli.{module}")
    except ModuleNotFoundError as e:
        if e.name == f"talmts.cli.{module}":
            return None
        raise


# Errors that mean bad input or a bad environment, not a bug: talmts' own (TalmtsError: config, schema, video,
# weights, ...) and the operating system's (a missing file, a permission, a full disk). They print as one line.
USER_ERRORS: tuple[type[BaseException], ...] = (TalmtsError, OSError)
EXIT_USER_ERROR = 2
EXIT_UNEXPECTED = 1
DEBUG_ENV = "TALMTS_DEBUG"  # set to 1: as --debug


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get(DEBUG_ENV, "") not in ("", "0")
    argv = [a for a in argv if a != "--debug"]  # accepted anywhere on the line, not only before the command
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
    from talmts.processes import stop_signals_raise

    with stop_signals_raise():  # SIGTERM / SIGHUP unwind like Ctrl-C: pools pass the stop on to their workers
        if debug:
            undo_log = show_library_log(f"talmts {args.command}")
            try:
                return int(mod.run(args) or 0)
            finally:
                undo_log()
        return run_reporting_errors(mod.run, args, f"talmts {args.command}")


class CommandLog(logging.Handler):
    """What the library logs, shown as a command's output: info on stdout as written, warnings and errors on
    stderr as ``talmts CMD: warning: ...``. The streams are looked up at each record, so redirected or captured
    output (tests) sees them."""

    def __init__(self, name: str):
        super().__init__(logging.INFO)
        self.name = name

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.levelno >= logging.WARNING:  # one line, whatever a label or an id in it holds
            sys.stderr.write(f"{self.name}: warning: {' '.join(text.split())}\n")
            sys.stderr.flush()
        else:
            sys.stdout.write(text + "\n")
            sys.stdout.flush()


def show_library_log(name: str) -> Callable[[], None]:
    """Show the ``talmts`` loggers' records as the output of command ``name``; returns the undo."""
    logger, handler = logging.getLogger("talmts"), CommandLog(name)
    before = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False

    def undo() -> None:
        logger.removeHandler(handler)
        logger.setLevel(before[0])
        logger.propagate = before[1]

    return undo


def run_reporting_errors(run: Callable[[argparse.Namespace], int | None], args: argparse.Namespace, name: str) -> int:
    """``run(args)`` with talmts' errors and the system's (:data:`USER_ERRORS`) printed as one line on stderr
    (exit 2), anything else as a short line that points at ``--debug`` (exit 1), Ctrl-C as exit 130; warnings
    and the library's log print as one line each too."""
    previous = warnings.formatwarning  # formatwarning, not showwarning: warnings being recorded stay recorded
    warnings.formatwarning = lambda message, *_a, **_k: f"{name}: warning: {_one_line(message)}\n"
    undo_log = show_library_log(name)
    try:
        return int(run(args) or 0)
    except USER_ERRORS as e:
        print(f"{name}: {_one_line(e)}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM / SIGHUP (talmts.processes.Terminated)
        signum = getattr(e, "signum", None)
        print(f"{name}: {'interrupted' if signum is None else e}", file=sys.stderr)
        return 130 if signum is None else 128 + signum
    except Exception as e:  # a bug, or an input check not written yet: say so, and how to see where it happened
        if _out_of_memory(e):  # sizes within their bounds that this machine cannot hold: the input's doing
            print(
                f"{name}: out of memory ({_one_line(e)[:160]}); lower the sizes (batch, clip, network) or use a "
                "machine with more memory",
                file=sys.stderr,
            )
            return EXIT_USER_ERROR
        print(
            f"{name}: unexpected {type(e).__name__}: {_one_line(e)}\n"
            f"{name}: this may be a bug in talmts; run again with --debug for the traceback",
            file=sys.stderr,
        )
        return EXIT_UNEXPECTED
    finally:
        warnings.formatwarning = previous
        undo_log()


def _out_of_memory(e: BaseException) -> bool:
    """MemoryError, torch's OutOfMemoryError (CUDA) or its CPU allocator's refusal (a RuntimeError)."""
    return isinstance(e, MemoryError) or type(e).__name__ == "OutOfMemoryError" or "can't allocate memory" in str(e)


def _one_line(e: BaseException) -> str:
    if isinstance(e, OSError) and e.filename is not None and e.strerror:
        return f"{e.filename}: {e.strerror}"
    text = str(e) if not isinstance(e, KeyError) else str(e.args[0] if e.args else e)
    return " ".join(text.split()) or type(e).__name__


if __name__ == "__main__":
    sys.exit(main())
