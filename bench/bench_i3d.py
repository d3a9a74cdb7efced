"""I3D forward time on CPU: talmts' padding (folded into conv/pool arguments) vs an explicit F.pad reference,
and with BatchNorm folded into the convolutions.

    python bench/bench_i3d.py --frames 256 --size 96 --repeats 3
"""

from __future__ import annotations

import argparse
import os
import time
from contextlib import contextmanager

import torch
import torch.nn.functional as F

from talmts.models.i3d import InceptionI3d, Unit3D
from talmts.models.same import MaxPool3dSame, pad_same


def _fpad_unit(self: Unit3D, x: torch.Tensor) -> torch.Tensor:  # pytorch-i3d's way: pad the whole tensor
    x = F.conv3d(pad_same(x, self.kernel, self.stride), self.conv3d.weight, self.conv3d.bias, self.stride)
    if self.bn is not None:
        x = self.bn(x)
    return F.relu(x) if self.relu else x


def _fpad_pool(self: MaxPool3dSame, x: torch.Tensor) -> torch.Tensor:
    return F.max_pool3d(pad_same(x, self.kernel, self.stride), self.kernel, self.stride)


@contextmanager
def explicit_padding():
    unit, pool = Unit3D.forward, MaxPool3dSame.forward
    Unit3D.forward, MaxPool3dSame.forward = _fpad_unit, _fpad_pool
    try:
        yield
    finally:
        Unit3D.forward, MaxPool3dSame.forward = unit, pool


def best_times(fns: dict, repeats: int) -> dict[str, float]:
    """Best-of-N seconds per variant; variants are interleaved so that load from other processes hits all."""
    for fn in fns.values():
        fn()  # warm-up
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: min(t) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=256)
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--train", action="store_true", help="also time forward + backward (frozen BN)")
    args = parser.parse_args()
    torch.manual_seed(0)
    x = torch.randn(1, 3, args.frames, args.size, args.size)
    model = InceptionI3d(width=args.width).eval()
    folded = model.fold_batchnorm()
    print(
        f"load average {os.getloadavg()[0]:.1f}; I3D width {args.width} on {list(x.shape)}, {torch.get_num_threads()} threads, best of {args.repeats}"
    )

    def forward(m):
        def run():
            with torch.inference_mode():
                m.extract_features(x, ["Mixed_4f", "Mixed_5c"])

        return run

    def padded(m):
        def run():
            with explicit_padding():
                forward(m)()

        return run

    t = best_times({"ref": padded(model), "ours": forward(model), "fold": forward(folded)}, args.repeats)
    t_ref, t_ours, t_fold = t["ref"], t["ours"], t["fold"]
    print(f"explicit F.pad (pytorch-i3d style): {t_ref:.3f} s")
    print(f"padding in conv/pool arguments:    {t_ours:.3f} s  ({t_ref / t_ours:.2f}x)")
    print(f"  + BatchNorm folded:               {t_fold:.3f} s  ({t_ref / t_fold:.2f}x)")
    if args.train:
        model.train()

        def step():
            feats = model.extract_features(x, ["Mixed_4f", "Mixed_5c"])
            (feats["Mixed_4f"].mean() + feats["Mixed_5c"].mean()).backward()

        print(f"train forward + backward:          {best_times({'t': step}, args.repeats)['t']:.3f} s")


if __name__ == "__main__":
    main()
