"""Dense optical flow between consecutive sampled frames, stored as uint8 the way AFSD stores it.

AFSD runs mmlab ``denseflow`` (TV-L1, bound 20) on the 10 fps 112 x 112 RGB frames: each flow component v is
clipped to [-20, 20] and mapped linearly to 0..255 (0 -> 127.5 -> 128), and the last flow frame is repeated so
that there are as many flow frames as RGB frames. We compute flow on the same sampled, resized frames with:

* ``tvl1``: OpenCV's Dual TV-L1 (``cv2.optflow.DualTVL1OpticalFlow_create``) with OpenCV's default
  parameters, which are those of denseflow's CUDA TV-L1 (tau 0.25, lambda 0.15, theta 0.3, 5 scales with
  scale step 0.8, 5 warps, epsilon 0.01); on grayscale frames, as denseflow.
* ``tvl1-torch`` (the default): the same TV-L1 in PyTorch (:mod:`talmts.data.tvl1`), batched over many frame
  pairs, on a GPU or the CPU, where it is also the faster of the two per core (docs/PERFORMANCE.md). It agrees with
  ``tvl1`` to a mean end-point error of a few hundredths of a pixel (docs/DESIGN.md), so a network trained on either
  accepts the other (:func:`talmts.data.record.flow_family`).
* ``dis``: OpenCV's DIS flow (preset MEDIUM), tens of times faster, for quick experiments.

Flow ``t`` is the motion from frame t to frame t + 1 (x to the right, y downward, in pixels of the stored
frames).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Literal

import cv2
import numpy as np

from talmts.errors import InputError

FLOW_BOUND = 20.0
FlowMethod = Literal["tvl1", "tvl1-torch", "dis"]
FLOW_METHODS: tuple[str, ...] = ("tvl1", "tvl1-torch", "dis")
BATCHED_METHODS: tuple[str, ...] = ("tvl1-torch",)
DEFAULT_FLOW: FlowMethod = "tvl1-torch"  # TV-L1, in its faster implementation on the CPU and the only one on a GPU
GPU_BATCH = 1024  # pairs per call on a GPU: enough to fill it
# On the CPU a batch amortises the per-operation cost until its working set leaves the cache: the best batch holds
# about this many pixels at every frame size measured (4-8 pairs at 112 px, 16-32 at 56 px).
CPU_BATCH_PIXELS = 65536


def default_batch(method: str, device: str | None, frame_shape: tuple[int, ...]) -> int:
    """Frame pairs per call of ``method`` on ``device`` for frames of ``frame_shape`` (H, W, ...)."""
    if method not in BATCHED_METHODS:
        return 1
    if device not in (None, "cpu"):
        return GPU_BATCH
    return max(1, round(CPU_BATCH_PIXELS / (frame_shape[0] * frame_shape[1])))


def flow_to_uint8(flow: np.ndarray, bound: float = FLOW_BOUND) -> np.ndarray:
    """float flow [..., 2] in pixels -> uint8, clip to [-bound, bound], map linearly to 0..255 (0 -> 128)."""
    scaled = (np.clip(flow, -bound, bound) + bound) * (255.0 / (2.0 * bound))
    return np.rint(scaled).astype(np.uint8)


def uint8_to_flow(encoded: np.ndarray, bound: float = FLOW_BOUND) -> np.ndarray:
    """Inverse of :func:`flow_to_uint8` (up to the quantisation step 2 * bound / 255)."""
    return encoded.astype(np.float32) * (2.0 * bound / 255.0) - bound


def make_flow_fn(method: FlowMethod) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """A function (gray uint8 [H, W], gray uint8 [H, W]) -> float32 flow [H, W, 2] for ``method``."""
    if method in BATCHED_METHODS:
        batched = make_batch_flow_fn(method)
        return lambda prev, nxt: batched(prev[None], nxt[None])[0]
    if method == "tvl1":
        algo = cv2.optflow.DualTVL1OpticalFlow_create()
    elif method == "dis":
        algo = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    else:
        raise InputError(f"unknown flow method {method!r}; choose one of {list(FLOW_METHODS)}")

    def flow(prev: np.ndarray, nxt: np.ndarray) -> np.ndarray:
        return algo.calc(prev, nxt, None)

    return flow


def make_batch_flow_fn(method: FlowMethod, device: str | None = None) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """(gray uint8 [N, H, W], gray uint8 [N, H, W]) -> float32 flow [N, H, W, 2]; a batched method runs on
    ``device`` (default the CPU), OpenCV's methods pair by pair on the CPU whatever ``device`` says."""
    if method in BATCHED_METHODS:
        from talmts.data.tvl1 import tvl1_flow

        return lambda prev, nxt: tvl1_flow(prev, nxt, device=device).cpu().numpy()
    fn = make_flow_fn(method)
    return lambda prev, nxt: np.stack([fn(a, b) for a, b in zip(prev, nxt)])


def with_flow(
    frames: Iterable[np.ndarray],
    method: FlowMethod = DEFAULT_FLOW,
    bound: float = FLOW_BOUND,
    device: str | None = None,
    batch: int | None = None,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The one flow function: uint8 RGB frames [H, W, 3], one at a time -> (frame_t, uint8 flow_t [H, W, 2]) pairs.

    Flow t is the motion t -> t + 1; the last frame gets the last flow again, and a lone frame, which has no motion
    to measure, gets zero flow (all 128). ``batch`` frame pairs (default: :func:`default_batch` for the first frame's
    size) are computed at once, so batch + 1 frames are held back and a video of any length streams.
    """
    fn = make_batch_flow_fn(method, device)
    held: list[np.ndarray] = []  # RGB frames whose flow is not computed yet, and the frame after them
    grays: list[np.ndarray] = []
    last = None
    for frame in frames:
        batch = batch or default_batch(method, device, frame.shape)  # chosen once, from the first frame
        held.append(frame)
        grays.append(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY))
        if len(held) == batch + 1:
            flows = flow_to_uint8(fn(np.stack(grays[:-1]), np.stack(grays[1:])), bound)
            yield from zip(held[:-1], flows)
            last, held, grays = flows[-1], held[-1:], grays[-1:]
    if len(held) > 1:
        flows = flow_to_uint8(fn(np.stack(grays[:-1]), np.stack(grays[1:])), bound)
        yield from zip(held[:-1], flows)
        last = flows[-1]
    if held:
        if last is None:
            last = flow_to_uint8(np.zeros((*held[-1].shape[:2], 2), np.float32), bound)
        yield held[-1], last


def compute_flow(
    frames: np.ndarray,
    method: FlowMethod = DEFAULT_FLOW,
    bound: float = FLOW_BOUND,
    device: str | None = None,
    batch: int | None = None,
) -> np.ndarray:
    """uint8 RGB frames [T, H, W, 3] -> uint8 flow [T, H, W, 2] (x, y): :func:`with_flow` over a whole array."""
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"expected uint8 RGB frames [T, H, W, 3], got {frames.dtype} {frames.shape}")
    if len(frames) == 0:
        raise ValueError("no frames")
    return np.stack([flow for _, flow in with_flow(frames, method, bound, device, batch)])
