"""``talmts convert-checkpoint OLD.pt NEW.pt``: rewrite a checkpoint of an older talmts in the current format.

Current checkpoints hold plain values and tensors only and carry a checksum, so talmts loads them without
running any code from the file. An older checkpoint also holds pickled numpy objects; reading it needs full
unpickling, which runs whatever code the file carries. This command does that, and only this command, saying
so when it does: convert only files whose source you trust.
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("old", help="the checkpoint to convert")
    parser.add_argument("new", help="where to write the converted checkpoint (must differ from OLD)")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from talmts.engine.checkpoint import CheckpointError, convert_checkpoint, load_checkpoint

    old, new = Path(args.old), Path(args.new)
    if old.resolve() == new.resolve():
        print("talmts convert-checkpoint: NEW must differ from OLD (OLD is kept as it is)", file=sys.stderr)
        return 2

    def announce(message: str) -> None:
        print(f"talmts convert-checkpoint: warning: {message} (convert only files you trust)", file=sys.stderr)

    try:
        state = convert_checkpoint(old, new, trust=True, announce=announce)
        load_checkpoint(new)  # what was written reads back safely and its checksum holds
    except CheckpointError as e:
        print(f"talmts convert-checkpoint: {e}", file=sys.stderr)
        return 2
    print(f"wrote {new} (epoch {state.get('epoch')}, step {state.get('step')}); talmts loads it without unpickling")
    return 0
