"""Duality-based TV-L1 optical flow in PyTorch, batched over frame pairs, on any device.

The method of Zach, Pock and Bischof (2007) in the form of Sanchez, Meinhardt-Llopis and Facciolo (IPOL 2013),
with the numerical choices of OpenCV's ``cv2.optflow.DualTVL1OpticalFlow`` so that the two agree closely
(docs/DESIGN.md, "TV-L1 in PyTorch", lists every parameter and choice):

* gray images as float 0..255 (uint8 as is, float inputs in 0..1 times 255);
* a pyramid of bilinear resizes by ``scale_step`` without blur, each level from the one above, stopped before a
  side falls under 16 px; the flow goes up a level by a bilinear resize to the finer size times 1 / scale_step;
* per warp: I1 and its centred gradient sampled at x + u with Keys' bicubic (a = -0.75), zero outside the
  image (cv2.remap, INTER_CUBIC, BORDER_CONSTANT);
* per outer iteration: a 5 x 5 median of each flow component (edges replicated);
* per inner iteration: the thresholding step, u = v + theta div p, the dual step p = (p + tau/theta grad u) /
  (1 + tau/theta |grad u|), with forward differences (zero on the last row/column) and their adjoint divergence;
* stop a warp once the squared change of u summed over the image is <= epsilon^2 * pixels.

Each pair stops on its own (it leaves the working batch, or is frozen by a mask on a GPU), so a batch gives exactly
what each pair gives alone. gamma (the illumination term) is not implemented: OpenCV's default is 0.

The pieces (pyramid, warping, operators, median, solver) serve only this solver; each is tested against its OpenCV
counterpart in tests/test_tvl1.py.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import numpy as np
import torch
import torch.nn.functional as F

MIN_PYRAMID_SIDE = 16  # OpenCV drops a level whose width or height is under 16 px
CUBIC_A = -0.75  # Keys' cubic convolution parameter used by OpenCV


@dataclass(frozen=True)
class TVL1Params:
    """The parameters of ``cv2.optflow.DualTVL1OpticalFlow``; the defaults are OpenCV's."""

    tau: float = 0.25  # dual step size
    lambda_: float = 0.15  # weight of the data term
    theta: float = 0.3  # coupling of u and v
    gamma: float = 0.0  # illumination term; only 0 is supported
    scales: int = 5  # pyramid levels at most
    scale_step: float = 0.8  # size ratio between levels
    warps: int = 5  # warps per level
    epsilon: float = 0.01  # stopping threshold
    inner_iterations: int = 30
    outer_iterations: int = 10
    median_filtering: int = 5  # median size applied per outer iteration; <= 1 turns it off

    def __post_init__(self) -> None:
        if self.gamma != 0:
            raise ValueError(f"TVL1Params.gamma={self.gamma}: only gamma=0 is implemented (OpenCV's default)")
        if self.scales < 1 or self.warps < 1 or not 0 < self.scale_step < 1:
            raise ValueError(f"TVL1Params: need scales >= 1, warps >= 1, 0 < scale_step < 1; got {self}")
        if self.median_filtering > 1 and self.median_filtering % 2 == 0:
            raise ValueError(f"TVL1Params.median_filtering={self.median_filtering}: must be odd (or <= 1 for off)")


def _f32(x: float) -> float:
    """x rounded to float32, as OpenCV casts its double parameters before the float loops."""
    return float(np.float32(x))


# ---------------------------------------------------------------- pyramid
def pyramid_sizes(height: int, width: int, scales: int, scale_step: float) -> list[tuple[int, int]]:
    """(H, W) of each level, finest first: round(side * scale_step) from the level above, >= 16 px."""
    sizes = [(height, width)]
    for _ in range(1, scales):
        h, w = round(sizes[-1][0] * scale_step), round(sizes[-1][1] * scale_step)
        if h < MIN_PYRAMID_SIDE or w < MIN_PYRAMID_SIDE:
            break
        sizes.append((h, w))
    return sizes


def _linear_taps(
    src: int, dst: int, scale: float, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Left index, right index and right weight of each output sample (half-pixel centres, clamped edges)."""
    pos = ((torch.arange(dst, dtype=torch.float64) + 0.5) * scale - 0.5).to(torch.float32)
    left = torch.floor(pos)
    frac = pos - left
    left = left.long()
    outside = (left < 0) | (left >= src - 1)  # OpenCV repeats the edge sample there
    frac = torch.where(outside, torch.zeros_like(frac), frac)
    left = left.clamp(0, src - 1)
    right = (left + 1).clamp(max=src - 1)
    return left.to(device), right.to(device), frac.to(device)


def resize_linear(x: torch.Tensor, size: tuple[int, int], scale: tuple[float, float] | None = None) -> torch.Tensor:
    """Bilinear resize of [..., H, W] to ``size`` like cv2.resize(INTER_LINEAR): rows first, then columns.

    ``scale`` is the (y, x) source step per output pixel; by default source size / output size (cv2.resize with
    dsize); the pyramid passes 1 / scale_step (cv2.resize with fx = fy = scale_step).
    """
    (h, w), (oh, ow) = x.shape[-2:], size
    sy, sx = scale if scale is not None else (h / oh, w / ow)
    x0, x1, ax = _linear_taps(w, ow, sx, x.device)
    y0, y1, ay = _linear_taps(h, oh, sy, x.device)
    rows = x[..., x0] * (1 - ax) + x[..., x1] * ax
    return rows[..., y0, :] * (1 - ay)[:, None] + rows[..., y1, :] * ay[:, None]


# ---------------------------------------------------------------- differential operators
def centered_gradient(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Half central differences of [..., H, W]; on the edges half the one-sided difference (OpenCV's stencil)."""
    p = F.pad(x[:, None] if x.dim() == 3 else x, (1, 1, 1, 1), mode="replicate")
    p = p[:, 0] if x.dim() == 3 else p
    dx = 0.5 * (p[..., 1:-1, 2:] - p[..., 1:-1, :-2])
    dy = 0.5 * (p[..., 2:, 1:-1] - p[..., :-2, 1:-1])
    return dx, dy


def forward_gradient(u: torch.Tensor) -> torch.Tensor:
    """Forward differences of [..., H, W] -> [..., 2, H, W] (d/dx, d/dy), zero on the last column / row."""
    dx = F.pad(u[..., :, 1:] - u[..., :, :-1], (0, 1))
    dy = F.pad(u[..., 1:, :] - u[..., :-1, :], (0, 0, 0, 1))
    return torch.stack((dx, dy), dim=-3)


def divergence(p: torch.Tensor) -> torch.Tensor:
    """Backward-difference divergence of [..., 2, H, W] -> [..., H, W], the value before the first row/column
    taken as 0: minus the adjoint of :func:`forward_gradient` for fields zero on the last column (x) / row (y)."""
    px, py = p[..., 0, :, :], p[..., 1, :, :]
    dx = px - F.pad(px[..., :, :-1], (1, 0))
    dy = py - F.pad(py[..., :-1, :], (0, 0, 1, 0))
    return dx + dy


def _sorting_network(n: int) -> list[tuple[int, int]]:
    """Batcher's odd-even merge sort on the next power of two, comparators past n dropped: sorts n values."""
    size, pairs, p = 1 << (n - 1).bit_length(), [], 1
    while p < size:
        k = p
        while k >= 1:
            for j in range(k % p, size - k, 2 * k):
                for i in range(min(k, size - j - k)):
                    if (i + j) // (2 * p) == (i + j + k) // (2 * p) and i + j + k < n:
                        pairs.append((i + j, i + j + k))
            k //= 2
        p *= 2
    return pairs


@cache
def median_network(n: int) -> tuple[tuple[int, int, bool, bool], ...]:
    """The comparators of a sorting network on n values that the middle output depends on, in order, each as
    (low slot, high slot, min needed, max needed): the rest of the network is dead code for a median."""
    needed, kept = {n // 2}, []
    for lo, hi in reversed(_sorting_network(n)):
        if lo in needed or hi in needed:
            kept.append((lo, hi, lo in needed, hi in needed))
            needed |= {lo, hi}
    return tuple(reversed(kept))


def median_filter(x: torch.Tensor, size: int) -> torch.Tensor:
    """size x size median of [N, H, W] with replicated edges (cv2.medianBlur), by a selection network of
    elementwise min / max over the size * size shifted views (a sort per pixel is far slower)."""
    r, (h, w) = size // 2, x.shape[-2:]
    padded = F.pad(x[:, None], (r, r, r, r), mode="replicate")[:, 0]
    slots = [padded[:, i : i + h, j : j + w].contiguous() for i in range(size) for j in range(size)]
    spare = torch.empty_like(slots[0])  # in place, with one spare buffer: no allocation per comparator
    for lo, hi, need_min, need_max in median_network(size * size):
        a, b = slots[lo], slots[hi]
        if need_min and need_max:
            torch.minimum(a, b, out=spare)
            torch.maximum(a, b, out=b)
            slots[lo], spare = spare, a
        elif need_min:
            torch.minimum(a, b, out=a)
        else:
            torch.maximum(a, b, out=b)
    return slots[size * size // 2]


# ---------------------------------------------------------------- warping
def cubic_weights(t: torch.Tensor) -> torch.Tensor:
    """Keys' cubic weights (a = -0.75) of the taps at -1, 0, 1, 2 for fractional positions t in [0, 1): [..., 4]."""
    a = CUBIC_A
    s = 1 - t
    w0 = ((a * (t + 1) - 5 * a) * (t + 1) + 8 * a) * (t + 1) - 4 * a
    w1 = ((a + 2) * t - (a + 3)) * t * t + 1
    w2 = ((a + 2) * s - (a + 3)) * s * s + 1
    return torch.stack((w0, w1, w2, 1 - w0 - w1 - w2), dim=-1)


def remap_cubic(images: torch.Tensor, map_x: torch.Tensor, map_y: torch.Tensor) -> torch.Tensor:
    """images [N, C, H, W] sampled at (map_x, map_y) [N, H', W'] -> [N, C, H', W'], like cv2.remap(INTER_CUBIC,
    BORDER_CONSTANT 0) of OpenCV 5: 4 x 4 Keys taps at the exact position, taps outside the image read 0."""
    n, c, h, w = images.shape
    fx, fy = torch.floor(map_x), torch.floor(map_y)
    wx, wy = cubic_weights(map_x - fx), cubic_weights(map_y - fy)  # [N, H', W', 4]
    # A position at or past -3 or side + 1 has all four taps outside: clamp it there, a 4 px zero border holds them.
    pad = 4
    padded = F.pad(images, (pad, pad, pad, pad)).reshape(n, c, -1)
    x0 = fx.clamp(-3, w + 1).long() - 1 + pad  # first tap, in padded coordinates
    y0 = fy.clamp(-3, h + 1).long() - 1 + pad
    stride = w + 2 * pad
    out = None
    for i in range(4):  # rows of taps
        row = None
        for j in range(4):
            index = ((y0 + i) * stride + x0 + j).reshape(n, 1, -1).expand(n, c, -1)
            tap = padded.gather(2, index).view(n, c, *map_x.shape[1:])
            term = tap * (wy[..., i] * wx[..., j])[:, None]
            row = term if row is None else row + term
        out = row if out is None else out + row
    return out


# ---------------------------------------------------------------- the solver
def _dual_step(p: torch.Tensor, u: torch.Tensor, taut: float) -> torch.Tensor:
    """p [N, 2, 2, H, W] <- (p + taut grad u) / (1 + taut |grad u|), per flow component."""
    g = forward_gradient(u)
    return (p + taut * g) / (1 + taut * torch.hypot(g[:, :, 0], g[:, :, 1]))[:, :, None]


def inner_step(
    u: torch.Tensor,
    p: torch.Tensor,
    ig: torch.Tensor,
    rho_c: torch.Tensor,
    denom: torch.Tensor,
    l_t: float,
    taut: float,
    theta: float,
    active: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One inner iteration: (u, p) -> (u', p', per-pair squared change of u); pairs not ``active`` keep u and p.

    Thresholding: the step along grad I1w that minimises the linearised data term plus the coupling, clamped to
    +-lambda theta (OpenCV's three cases in one clamp), then u' = v + theta div p and the dual step on p.
    """
    rho = rho_c + (ig[:, 0] * u[:, 0] + ig[:, 1] * u[:, 1])
    shift = (-rho / denom).clamp(-l_t, l_t)[:, None] * ig
    u_new = (u + shift) + theta * divergence(p)
    change = ((u_new - u) ** 2).sum(dim=(1, 2, 3))
    p_new = _dual_step(p, u_new, taut)
    if active is None:
        return u_new, p_new, change
    keep = active[:, None, None, None]
    return torch.where(keep, u_new, u), torch.where(keep[..., None], p_new, p), change


@cache
def compiled_inner_step() -> Callable[..., tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """:func:`inner_step` through torch.compile: one fused kernel instead of about 35 passes over memory."""
    return torch.compile(inner_step, dynamic=True)


def _solve_level(
    i0: torch.Tensor, i1: torch.Tensor, u: torch.Tensor, prm: TVL1Params, masked: bool, compiled: bool = False
) -> torch.Tensor:
    """Refine the flow u [N, 2, H, W] between i0 and i1 [N, H, W] at one pyramid level.

    Pairs that meet the stopping rule leave the working batch: checked after every inner iteration, or with
    ``masked``, a pair that stops is frozen by a mask and the batch shrinks once per outer iteration (a GPU then
    never waits for the host inside an outer iteration). Both give each pair exactly its own result.
    """
    n, _, h, w = u.shape
    step = compiled_inner_step() if compiled else inner_step
    l_t, taut, theta = _f32(prm.lambda_ * prm.theta), _f32(prm.tau / prm.theta), _f32(prm.theta)
    stop_at = _f32(prm.epsilon * prm.epsilon * h * w)
    tiny = float(np.finfo(np.float32).eps)
    gx, gy = centered_gradient(i1)
    i1_and_grad = torch.stack((i1, gx, gy), dim=1)
    ys, xs = torch.meshgrid(torch.arange(h, device=u.device), torch.arange(w, device=u.device), indexing="ij")
    p_all = torch.zeros(n, 2, 2, h, w, device=u.device)
    u_all = u.clone()
    for _ in range(prm.warps):
        u0 = u_all
        warped = remap_cubic(i1_and_grad, xs + u0[:, 0], ys + u0[:, 1])
        i1w, ig = warped[:, 0], warped[:, 1:]  # I1(x + u0) and its gradient [N, 2, H, W]
        grad_sq = ig[:, 0] * ig[:, 0] + ig[:, 1] * ig[:, 1]
        rho_c = i1w - ig[:, 0] * u0[:, 0] - ig[:, 1] * u0[:, 1] - i0  # residual, less its part linear in u
        denom = grad_sq.clamp_min(tiny)
        # the working batch: pair indices and their state
        idx, u, p = torch.arange(n, device=u.device), u_all.clone(), p_all.clone()
        active = torch.ones(n, dtype=torch.bool, device=u.device)
        for _ in range(prm.outer_iterations):
            if prm.median_filtering > 1:
                med = median_filter(u.reshape(-1, h, w), prm.median_filtering).view_as(u)
                u = torch.where(active[:, None, None, None], med, u) if masked else med
            for _ in range(prm.inner_iterations):
                if masked:
                    u, p, change = step(u, p, ig, rho_c, denom, l_t, taut, theta, active)
                    active = active & (change > stop_at)
                else:
                    u, p, change = step(u, p, ig, rho_c, denom, l_t, taut, theta)
                    active = change > stop_at
                    if not bool(active.all()):
                        idx, u, p, (ig, rho_c, denom), active = _shrink(
                            idx, u, p, u_all, p_all, (ig, rho_c, denom), active
                        )
                        if len(idx) == 0:
                            break
            if masked and not bool(active.all()):
                idx, u, p, (ig, rho_c, denom), active = _shrink(idx, u, p, u_all, p_all, (ig, rho_c, denom), active)
            if len(idx) == 0:
                break
        u_all[idx], p_all[idx] = u, p
    return u_all


def _shrink(
    idx: torch.Tensor,
    u: torch.Tensor,
    p: torch.Tensor,
    u_all: torch.Tensor,
    p_all: torch.Tensor,
    per_pair: tuple[torch.Tensor, ...],
    active: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, tuple[torch.Tensor, ...], torch.Tensor]:
    """Store the stopped pairs' u and p in u_all / p_all and keep the others in the working batch."""
    u_all[idx], p_all[idx] = u, p
    keep = active.nonzero()[:, 0]
    return idx[keep], u[keep], p[keep], tuple(t[keep] for t in per_pair), active[keep]


def _as_gray_batch(frames: torch.Tensor | np.ndarray, device: torch.device | str | None) -> torch.Tensor:
    t = torch.as_tensor(frames)
    if t.dim() != 3:
        raise ValueError(f"expected gray frames [N, H, W], got shape {tuple(t.shape)}")
    if t.dtype == torch.uint8:
        return t.to(device=device, dtype=torch.float32)
    if not t.is_floating_point():
        raise ValueError(f"expected uint8 (0..255) or float (0..1) frames, got {t.dtype}")
    return t.to(device=device, dtype=torch.float32) * 255.0  # OpenCV's scale for float images


@torch.no_grad()
def tvl1_flow(
    prev: torch.Tensor | np.ndarray,
    nxt: torch.Tensor | np.ndarray,
    params: TVL1Params | None = None,
    device: torch.device | str | None = None,
    masked: bool | None = None,
    compiled: bool = False,
) -> torch.Tensor:
    """TV-L1 flow from each ``prev[i]`` to ``nxt[i]``: gray [N, H, W] (uint8 0..255 or float 0..1) -> float32
    flow [N, H, W, 2] in pixels (x right, y down), on ``device`` (default: the frames' device).

    ``masked`` picks how stopped pairs leave the batch (see ``_solve_level``); by default masks off the CPU only.
    ``compiled`` runs the inner iteration through torch.compile (fused; not bit-identical to eager, since the
    compiler may contract multiply-adds).
    """
    prm = params or TVL1Params()
    i0, i1 = _as_gray_batch(prev, device), _as_gray_batch(nxt, device)
    if i0.shape != i1.shape:
        raise ValueError(f"prev {tuple(i0.shape)} and nxt {tuple(i1.shape)} differ in shape")
    n, h, w = i0.shape
    if h < 3 or w < 3:
        raise ValueError(f"frames of {h} x {w} px are too small for TV-L1 (at least 3 x 3)")
    if masked is None:
        masked = i0.device.type != "cpu"
    sizes = pyramid_sizes(h, w, prm.scales, prm.scale_step)
    down = (1.0 / prm.scale_step, 1.0 / prm.scale_step)
    levels = [(i0, i1)]
    for size in sizes[1:]:
        levels.append((resize_linear(levels[-1][0], size, down), resize_linear(levels[-1][1], size, down)))
    u = torch.zeros(n, 2, *sizes[-1], device=i0.device)
    for s in range(len(sizes) - 1, -1, -1):
        u = _solve_level(*levels[s], u, prm, masked, compiled)
        if s > 0:
            u = resize_linear(u, sizes[s - 1]) * _f32(1.0 / prm.scale_step)
    return u.permute(0, 2, 3, 1).contiguous()


def opencv_tvl1(params: TVL1Params | None = None) -> object:  # a cv2.optflow.DualTVL1OpticalFlow
    """OpenCV's ``DualTVL1OpticalFlow`` set to ``params``: the reference this module is compared with."""
    import cv2

    prm = params or TVL1Params()
    algo = cv2.optflow.DualTVL1OpticalFlow_create()
    algo.setTau(prm.tau)
    algo.setLambda(prm.lambda_)
    algo.setTheta(prm.theta)
    algo.setGamma(prm.gamma)
    algo.setScalesNumber(prm.scales)
    algo.setScaleStep(prm.scale_step)
    algo.setWarpingsNumber(prm.warps)
    algo.setEpsilon(prm.epsilon)
    algo.setInnerIterations(prm.inner_iterations)
    algo.setOuterIterations(prm.outer_iterations)
    algo.setMedianFiltering(prm.median_filtering)
    algo.setUseInitialFlow(False)
    return algo
