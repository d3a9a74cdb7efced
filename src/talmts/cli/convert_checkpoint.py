"""``talmts convert-checkpoint OLD.pt NEW.pt [--trust]``: rewrite a checkpoint of an older talmts in the current
format.

Current checkpoints hold plain values and tensors only and carry a checksum, so talmts loads them without
running any code from the file. A checksum-less file that holds plain values converts as it is. An older
checkpoint also holds pickled numpy objects; reading it needs full unpickling, which runs whatever code the file
carries: that happens only with ``--trust``, and is announced when it does. Without ``--trust`` such a file is
refused and nothing is written.
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("old", help="the checkpoint to convert")
    parser.add_argument("new", help="where to write the converted checkpoint (must differ from OLD)")
    parser.add_argument(
        "--trust",
        action="store_true",
        help="allow full unpickling of OLD, which runs any code the file holds: only for a file whose source you "
        "trust (a checkpoint of an older talmts needs it)",
    )


def run(args: argparse.Namespace) -> int:
    from talmts.engine.checkpoint import convert_checkpoint

    def announce(message: str) -> None:
        print(f"talmts convert-checkpoint: warning: {message}", file=sys.stderr)

    state = convert_checkpoint(args.old, args.new, trust=args.trust, announce=announce)
    print(
        f"wrote {args.new} (epoch {state.get('epoch')}, step {state.get('step')}); talmts loads it without unpickling"
    )
    return 0
