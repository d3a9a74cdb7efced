"""``talmts train CONFIG [key=value ...]``: train one stream (RGB or flow) as the config says.

Runs as one process, or as many under torchrun: ``torchrun --nproc_per_node 4 -m talmts train CONFIG``.
"""

from __future__ import annotations

import argparse
import sys

EPILOG = """\
stop and resume:
  SIGTERM or SIGUSR1 makes training write OUT_DIR/step-<step>.pt at the next step boundary and exit with 75;
  the same command with --resume OUT_DIR (or --resume auto) continues exactly where it stopped.
  train.checkpoint_every_steps=N also writes step-<step>.pt every N steps. Under torchrun --max-restarts, the
  restarted workers resume from OUT_DIR by themselves. A run started from an earlier point (or afresh) in a used
  OUT_DIR removes the step files beyond that point and moves later checkpoints into OUT_DIR/superseded-at-step-S/;
  optimisation settings changed since the checkpoint (train.lr, ...) apply from the resume on, with a warning.

exit codes:
  0 done; 2 bad input (config, data, checkpoint) or a loss that became NaN/Inf (nothing written after the last
  good checkpoint); 75 stopped by SIGTERM/SIGUSR1 after writing a checkpoint (resume with --resume);
  1 an unexpected error (run again with --debug); 130 Ctrl-C
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("config", help="a YAML config file, or the name of a bundled one (e.g. thumos14_rgb)")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.epochs=5 model.fsa.patch=48")
    parser.add_argument(
        "--resume",
        metavar="CKPT",
        help="continue exactly from a checkpoint; a run folder (its newest checkpoint whose checksum holds); or "
        "'auto' (the newest in train.out_dir, else start afresh)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from talmts.config import load_config, resolve_config_path

    cfg = load_config(resolve_config_path(args.config), args.overrides)  # before torch loads: a bad config fails fast
    from talmts.engine.training.loop import EXIT_STOPPED, TrainingStopped
    from talmts.engine.training.run import run_training

    try:
        result = run_training(cfg, resume=args.resume, progress=not args.quiet)
    except TrainingStopped as e:  # not a failure: the checkpoint to resume from is written
        print(f"talmts train: {e}", file=sys.stderr)
        return EXIT_STOPPED
    if result.rank != 0:  # under torchrun, one process reports
        return 0
    if result.history:
        last = result.history[-1]
        print(
            f"trained {result.steps} steps in {result.seconds:.0f} s; last loss {last['total']:.4f}; "
            f"checkpoints, losses and curves in {result.out_dir}"
        )
    for v in result.validation[-1:]:
        print(f"held-out ({cfg.data.val_subset}) average mAP after epoch {v['epoch']}: {v['average_mAP']:.4f}")
    return 0
