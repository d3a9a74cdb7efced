"""CPU: I3D's max pools with torch's max_pool3d vs the shifted running maximum used for inference, at the shapes of
one 256x96x96 clip: the nine Inception branch pools (3x3x3, stride 1) and the four strided pools between blocks
(ReLU inputs, so the shifted maximum skips the padding copy, as MaxPool3dSame does).
`python bench/bench_cpu_pool.py` prints JSON."""

import json
import statistics
import time

import torch
import torch.nn.functional as F

from talmts.models.i3d import POOLS
from talmts.models.same import MaxPool3dSame, shifted_max_pool

# (channels, T, H, W) entering the b3a pools of Mixed_3b..Mixed_5c for a [1, 3, 256, 96, 96] clip
SHAPES = [(192, 128, 12, 12), (256, 128, 12, 12)] + [(c, 64, 6, 6) for c in (480, 512, 512, 512, 528)]
SHAPES += [(832, 32, 3, 3), (832, 32, 3, 3)]
# (channels, T, H, W) entering MaxPool3d_2a, 3a, 4a, 5a for the same clip
STRIDED = {
    "MaxPool3d_2a_3x3": (64, 128, 48, 48),
    "MaxPool3d_3a_3x3": (192, 128, 24, 24),
    "MaxPool3d_4a_3x3": (480, 128, 12, 12),
    "MaxPool3d_5a_2x2": (832, 64, 6, 6),
}


def median_seconds(fn, x, reps=5):
    fn(x)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    native = shifted = 0.0
    strided = {}
    with torch.inference_mode():
        for c, t, h, w in SHAPES:
            x = torch.relu(torch.randn(1, c, t, h, w))
            native += median_seconds(lambda v: F.max_pool3d(v, 3, 1, 1), x)
            shifted += median_seconds(lambda v: shifted_max_pool(v, (3, 3, 3), (1, 1, 1), nonnegative=True), x)
        for name, shape in STRIDED.items():
            kernel, stride = POOLS[name]
            pool = MaxPool3dSame(kernel, stride)
            x = torch.relu(torch.randn(1, *shape))
            plan = pool._native_plan(shape[1:])
            assert plan is not None
            strided[name] = {
                "native_s": median_seconds(
                    lambda v, k=kernel, s=stride, p=plan: F.max_pool3d(v, k, s, p[0], ceil_mode=p[1]), x
                ),
                "shifted_s": median_seconds(
                    lambda v, k=kernel, s=stride: shifted_max_pool(v, k, s, nonnegative=True), x
                ),
            }
    s_native = sum(v["native_s"] for v in strided.values())
    s_shifted = sum(v["shifted_s"] for v in strided.values())
    print(
        json.dumps(
            {
                "threads": torch.get_num_threads(),
                "branch_pools": {"native_s": native, "shifted_s": shifted, "speedup": native / shifted},
                "strided_pools": {"native_s": s_native, "shifted_s": s_shifted, "speedup": s_native / s_shifted},
                "strided_each": strided,
            }
        )
    )


if __name__ == "__main__":
    main()
