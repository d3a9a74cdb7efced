"""Optical flow: the uint8 encoding, and flow recovered from a translating pattern (sign and magnitude)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from talmts.data.flow import FLOW_BOUND, compute_flow, flow_to_uint8, make_flow_fn, uint8_to_flow


def texture(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A smooth random grey texture, uint8 [h, w]."""
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal((h, w)).astype(np.float32)
    smooth = cv2.GaussianBlur(noise, (0, 0), 2.0)
    return np.clip(128 + 60 * smooth / smooth.std(), 0, 255).astype(np.uint8)


def translating_frames(dx: int, dy: int, n: int = 3, size: int = 64) -> np.ndarray:
    """RGB frames [n, size, size, 3] of a texture that moves (dx, dy) pixels per frame (x right, y down)."""
    big = texture(size + 4 * n * (abs(dy) + 1), size + 4 * n * (abs(dx) + 1))
    oy, ox = 2 * n * (abs(dy) + 1), 2 * n * (abs(dx) + 1)
    frames = []
    for k in range(n):
        # content moving by +dx means the window onto the big texture moves by -dx
        y, x = oy - k * dy, ox - k * dx
        gray = big[y : y + size, x : x + size]
        frames.append(np.repeat(gray[..., None], 3, axis=-1))
    return np.stack(frames)


def test_uint8_encoding_matches_denseflow_convention() -> None:
    values = np.array([-25.0, -20.0, -10.0, 0.0, 10.0, 20.0, 25.0], np.float32)
    # hand-computed: round(255 * (v + 20) / 40), clipped
    assert flow_to_uint8(values).tolist() == [0, 0, 64, 128, 191, 255, 255]
    v = np.linspace(-FLOW_BOUND, FLOW_BOUND, 1001, dtype=np.float32)
    assert np.abs(uint8_to_flow(flow_to_uint8(v)) - v).max() <= FLOW_BOUND / 255 + 1e-5


@pytest.mark.parametrize("method", ["tvl1", "dis"])
@pytest.mark.parametrize(("dx", "dy"), [(3, 0), (-2, 0), (0, 2), (2, -3)])
def test_translation_is_recovered(method: str, dx: int, dy: int) -> None:
    frames = translating_frames(dx, dy, n=2)
    flow = make_flow_fn(method)(
        cv2.cvtColor(frames[0], cv2.COLOR_RGB2GRAY), cv2.cvtColor(frames[1], cv2.COLOR_RGB2GRAY)
    )
    inner = flow[12:-12, 12:-12].reshape(-1, 2)  # away from the borders, where content enters
    np.testing.assert_allclose(np.median(inner, axis=0), [dx, dy], atol=0.25)


def test_compute_flow_layout_and_last_frame_repeated() -> None:
    frames = translating_frames(2, -1, n=4, size=48)
    out = compute_flow(frames, "dis")
    assert out.shape == (4, 48, 48, 2) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[3], out[2])
    decoded = uint8_to_flow(out[:3, 10:-10, 10:-10]).reshape(3, -1, 2)
    np.testing.assert_allclose(np.median(decoded, axis=1), [[2, -1]] * 3, atol=0.3)


def test_still_frames_have_zero_flow_and_one_frame_is_all_128() -> None:
    still = np.repeat(translating_frames(0, 0, n=1, size=32), 3, axis=0)
    assert np.abs(compute_flow(still, "tvl1").astype(int) - 128).max() <= 1
    single = compute_flow(still[:1], "tvl1")
    assert single.shape == (1, 32, 32, 2) and (single == 128).all()


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="uint8 RGB"):
        compute_flow(np.zeros((2, 8, 8), np.uint8))
    with pytest.raises(ValueError, match="unknown flow method"):
        make_flow_fn("farneback")  # type: ignore[arg-type]
