"""CPU: the Inception branch pools (3x3x3, stride 1) with torch's max_pool3d vs the shifted running maximum used
for inference, at the shapes of one 256x96x96 clip. `python bench/bench_cpu_pool.py` prints JSON."""

import json
import statistics
import time

import torch
import torch.nn.functional as F

from talmts.models.i3d import shifted_max_pool

# (channels, T, H, W) entering the b3a pools of Mixed_3b..Mixed_5c for a [1, 3, 256, 96, 96] clip
SHAPES = [(192, 128, 12, 12), (256, 128, 12, 12)] + [(c, 64, 6, 6) for c in (480, 512, 512, 512, 528)]
SHAPES += [(832, 32, 3, 3), (832, 32, 3, 3)]


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
    with torch.inference_mode():
        for c, t, h, w in SHAPES:
            x = torch.relu(torch.randn(1, c, t, h, w))
            native += median_seconds(lambda v: F.max_pool3d(v, 3, 1, 1), x)
            shifted += median_seconds(lambda v: shifted_max_pool(v, (3, 3, 3), (1, 1, 1)), x)
    print(
        json.dumps(
            {"threads": torch.get_num_threads(), "native_s": native, "shifted_s": shifted, "speedup": native / shifted}
        )
    )


if __name__ == "__main__":
    main()
