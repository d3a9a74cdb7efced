"""One backbone pass per video: the I3D's endpoints over a whole video, and each window's slice of them.

The I3D is convolutional in time with TF "same" padding. Over a video padded at its end (the datasets' padding,
0 in normalised space) to a multiple of its temporal stride, a window that starts on that stride's grid sees,
step for step, the same input positions in the video's feature map as in its own pass; only near the window's
inner edges does its own pass see zero padding where the video map sees the neighbouring frames. Under
``model.backbone.context: video`` training (the cache), validation and inference all read the video map, so the
head sees the same features everywhere (docs/DESIGN.md, "Cached features").

A long video is run in chunks with ``MARGIN`` frames of context on either side, which is more than the half
receptive field of Mixed_5c (99 frames): the chunks join into the map one pass over the whole video would give
(to float rounding; tested), with the memory of a chunk.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from talmts.config import BACKBONE_GRID

ENDPOINT_STRIDES = {"Mixed_4f": 4, "Mixed_5c": 8}  # sample frames per step of each endpoint the head reads
MARGIN = 64  # frames of context each side of a chunk (a multiple of BACKBONE_GRID, > half of 99)
CHUNK = 512  # frames of the map made per backbone pass on a long video (a multiple of BACKBONE_GRID)

ClipSource = Callable[[int, int], Tensor]  # (start, stop) -> float [C, stop - start, F, F], padding past the end


@torch.no_grad()
def video_feature_map(
    backbone: nn.Module,
    source: ClipSource,
    length: int,
    endpoints: Sequence[str],
    *,
    views: int = 1,
    flip: Callable[[Tensor], Tensor] | None = None,
    chunk: int = CHUNK,
    margin: int = MARGIN,
) -> dict[str, Tensor]:
    """``{endpoint: [views, C, length / stride, h, w]}`` of frames [0, length) read from ``source``.

    ``views`` 2 adds the mirror image (``flip`` of the clip) as view 1, in the same backbone pass.
    """
    if length % BACKBONE_GRID or chunk % BACKBONE_GRID or margin % BACKBONE_GRID:
        raise ValueError(f"length ({length}), chunk and margin must be multiples of {BACKBONE_GRID}")
    parts: dict[str, list[Tensor]] = {e: [] for e in endpoints}
    start = 0
    while start < length:
        stop = length if length - start <= chunk + margin else start + chunk
        lo, hi = max(0, start - margin), min(length, stop + margin)
        x = source(lo, hi)
        batch = torch.stack([x, flip(x)]) if views == 2 and flip is not None else x.unsqueeze(0)
        feats = backbone.extract_features(batch, list(endpoints))
        for e, f in feats.items():
            s = ENDPOINT_STRIDES[e]
            parts[e].append(f[:, :, (start - lo) // s : (stop - lo) // s])
        start = stop
    return {e: torch.cat(p, dim=2) for e, p in parts.items()}


def window_slice(feature_map: dict[str, Tensor], offset: int, clip_frames: int) -> dict[str, Tensor]:
    """The steps of ``feature_map`` ({endpoint: [..., t, h, w]}) a window of ``clip_frames`` at ``offset`` reads."""
    if offset % BACKBONE_GRID:
        raise ValueError(f"window offset {offset} is not on the backbone's grid ({BACKBONE_GRID} frames)")
    out = {}
    for e, f in feature_map.items():
        s = ENDPOINT_STRIDES[e]
        out[e] = f[..., offset // s : (offset + clip_frames) // s, :, :]
    return out
