"""``talmts detect``: actions in one raw video, or in every video of a folder (the network loaded once)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from talmts.engine.inference.detect_folder import FolderOutputs, detect_folder
from talmts.engine.inference.detect_video import DetectedVideo, detect_and_write
from talmts.engine.inference.predictor import load_predictor, use_fast_path
from talmts.errors import InputError

log = logging.getLogger(__name__)


def default_out(video: str | Path) -> Path:
    """detect-<video name>, or detect-<folder name> for a folder."""
    video = Path(video)
    return Path(f"detect-{video.stem if video.is_file() else video.resolve().name}")


def run_detect(
    video: str | Path,
    checkpoints: Sequence[str | Path | None],
    out_dir: str | Path | None = None,
    *,
    model: str | Path | None = None,
    annotations: str | Path | None = None,
    device: str = "auto",
    overrides: Sequence[str] = (),
    min_score: float = 0.1,
    video_scores: str | Path | None = None,
    video_id: str | None = None,
    fast: bool = False,
    progress: bool = False,
) -> DetectedVideo | FolderOutputs:
    """Load the checkpoints (one stream, or two fused) and detect actions in ``video``, a file or a folder; the
    files of :func:`detect_and_write` (per video) and, for a folder, :func:`detect_folder`'s index.

    ``annotations``: a ground-truth file whose entries are drawn beside the detections.
    ``video_scores``: video-level classifier scores (CUHK layout, as ``talmts eval --video-scores``) that label a
    class-agnostic checkpoint's detections; the video is looked up as ``video_id`` (default: the file's stem).
    ``model``: a folder written by ``talmts export``, run instead of ``checkpoints`` (which must then be empty).
    """
    from talmts.engine.inference.runtime import check_model_or_checkpoint
    from talmts.engine.site import check_page_options
    from talmts.formats import read_annotations

    check_page_options(min_score=min_score)  # before the network loads and any video is decoded
    check_model_or_checkpoint(
        checkpoints[0] if checkpoints else None, model, checkpoints[1] if len(checkpoints) > 1 else None
    )
    checkpoints = [c for c in checkpoints if c]  # [None] when the CLI had --model only
    video = Path(video)
    if video.is_dir() and video_id:
        raise InputError(f"{video} is a folder: --video-id names one video (ids in a folder are file names)")
    if not video.exists():
        raise FileNotFoundError(f"{video}: no such video file or folder")
    out = Path(out_dir) if out_dir is not None else default_out(video)
    gt = read_annotations(annotations) if annotations is not None else None
    predictor = load_predictor(checkpoints, model=model, device=device, overrides=overrides, video_scores=video_scores)
    if fast and (why_not := use_fast_path(predictor.streams, predictor.infer.batch_size, predictor.device)):
        log.warning("%s", why_not)
    if video.is_dir():
        return detect_folder(predictor, video, out, ground_truth=gt, min_score=min_score, progress=progress)
    return detect_and_write(predictor, video, out, ground_truth=gt, min_score=min_score, video_id=video_id)
