"""Snippet features in the community's layout (ActionFormer, TriDet, ...): one float32 ``[T, C]`` ``.npy`` per video.

Snippet i covers sample frames [i * stride, i * stride + window) of the prepared video, centre-cropped to
data.frame_size as the network sees them; its feature is the I3D's Mixed_5c averaged over time and space
(C = 1024 at width 1). A video shorter than one window gets one snippet, padded as the datasets pad
(talmts.data.transforms). ``OUT/features.json`` records window, stride, each video's sample fps and snippet count:
snippet i is centred at (i * stride + window / 2) / fps seconds.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from talmts.config import MODALITY_CHANNELS, Config
from talmts.data.dataset import load_video_array
from talmts.data.transforms import make_clip
from talmts.errors import InputError
from talmts.fileio import atomic_open, atomic_write_json
from talmts.formats.common import load_json
from talmts.formats.video_info import read_video_info
from talmts.schema import video_file

META_FILE = "features.json"
ENDPOINT = "Mixed_5c"


@dataclass
class SnippetSummary:
    out: Path
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    snippets: int = 0
    seconds: float = 0.0


def snippet_starts(num_frames: int, window: int, stride: int) -> list[int]:
    """Starts of the snippets of a video: every ``stride`` frames while a whole window fits; [0] when none fits."""
    if window < 1 or stride < 1:
        raise InputError(f"snippet window ({window}) and stride ({stride}) must be >= 1")
    if num_frames <= window:
        return [0]
    return list(range(0, num_frames - window + 1, stride))


@torch.no_grad()
def video_snippet_features(
    backbone: nn.Module, frames: np.ndarray, frame_size: int, window: int, stride: int, batch_size: int = 16
) -> np.ndarray:
    """uint8 [N, S, S, C] -> float32 [T, C_5c]: Mixed_5c of each snippet, averaged over time and space."""
    starts = snippet_starts(len(frames), window, stride)
    rows = []
    for i in range(0, len(starts), batch_size):
        x = torch.stack([make_clip(frames, s, window, frame_size, train=False) for s in starts[i : i + batch_size]])
        feat = backbone.extract_features(x, [ENDPOINT])[ENDPOINT]  # [B, C, t, h, w]
        rows.append(feat.float().mean(dim=(2, 3, 4)).numpy())
    return np.concatenate(rows).astype(np.float32)


def extract_snippet_features(
    cfg: Config,
    backbone: nn.Module,
    out: str | Path,
    *,
    window: int = 16,
    stride: int = 4,
    videos: list[str] | None = None,
    batch_size: int = 16,
    progress: bool = False,
) -> SnippetSummary:
    """Write OUT/<video>.npy for every prepared video (or ``videos``) and OUT/features.json; resumable."""
    out, start = Path(out), time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    root = Path(cfg.data.root)
    infos = read_video_info(root / "video_info.csv")
    names = sorted(infos) if videos is None else list(videos)
    unknown = [v for v in names if v not in infos]
    if unknown:
        raise InputError(f"{root}/video_info.csv: no video {unknown[0]!r}; run `talmts prepare` on it")
    meta_path = out / META_FILE
    meta = load_json(meta_path) if meta_path.is_file() else {}
    if not isinstance(meta, dict):
        raise InputError(f"{meta_path}: not a snippet record (a JSON object); write into another folder")
    wanted = {"window": window, "stride": stride, "endpoint": ENDPOINT, "frame_size": cfg.data.frame_size}
    wanted |= {"modality": cfg.data.modality, "weights": cfg.model.backbone.weights, "width": cfg.model.backbone.width}
    clash = [k for k, v in wanted.items() if k in meta and meta[k] != v]
    if clash:
        raise InputError(
            f"{meta_path}: made with other settings ({', '.join(f'{k}={meta[k]!r}' for k in clash)}); "
            "write into another folder or delete this one"
        )
    meta = {**wanted, "feature_dim": meta.get("feature_dim"), "videos": meta.get("videos", {})}
    summary = SnippetSummary(out)
    backbone.eval()
    sub = "frames" if cfg.data.modality == "rgb" else "flow"
    iterator = names
    if progress:
        from tqdm import tqdm

        iterator = tqdm(names, desc="snippets", unit="video", leave=False)
    for video in iterator:
        path, info = video_file(out, video, ".npy"), infos[video]
        rate = info.rate("sliding")
        if path.is_file() and video in meta["videos"]:
            summary.skipped.append(video)
            continue
        array = video_file(root / sub, video, ".npy")
        frames = load_video_array(array, MODALITY_CHANNELS[cfg.data.modality], info.sample_count)
        feats = video_snippet_features(backbone, frames, cfg.data.frame_size, window, stride, batch_size)
        with atomic_open(path, "wb") as f:
            np.save(f, feats)
        meta["feature_dim"] = int(feats.shape[1])
        meta["videos"][video] = {"fps": rate, "num_snippets": int(feats.shape[0]), "num_frames": int(len(frames))}
        atomic_write_json(meta_path, meta)  # after each video: resumable
        summary.done.append(video)
        summary.snippets += int(feats.shape[0])
    summary.seconds = time.perf_counter() - start
    return summary
