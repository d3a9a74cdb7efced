"""The inference levers' vocabulary: what a lever set is (:class:`Levers`), its allowed values and the named sets,
apart from the code that applies them (models/levers.py) so that the command line can offer them as choices
without loading torch."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

DTYPES = ("fp32", "bf16")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
COMPILE_BACKENDS = ("inductor", "aot_eager", "eager")


@dataclass(frozen=True)
class Levers:
    """Inference-only switches; ``fuse_pointwise`` implies ``fold_bn`` (the fused conv carries the folded BN)."""

    dtype: str = "fp32"  # one of DTYPES; bf16 runs under autocast
    channels_last: bool = False
    fold_bn: bool = False
    fuse_pointwise: bool = False
    stem_s2d: bool = False  # Conv3d_1a as space-to-depth + a 4x4x4 conv
    pointwise_matmul: bool = False  # every 1x1x1 conv as a matmul
    fused_pools: bool = False  # max pools as slices + maxima (one kernel each under torch.compile)
    compile: bool = False  # torch.compile, static shapes
    compile_mode: str = "default"  # one of COMPILE_MODES
    compile_backend: str = "inductor"  # "eager" / "aot_eager": trace only, for quick dry runs on a CPU
    cuda_graph: bool = False  # one CUDA graph per input shape (CUDA only; ignored elsewhere)

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype {self.dtype!r}: use fp32 or bf16")
        if self.compile_backend not in COMPILE_BACKENDS:
            raise ValueError(f"compile_backend {self.compile_backend!r}: use one of {', '.join(COMPILE_BACKENDS)}")
        if self.compile_mode not in COMPILE_MODES:
            raise ValueError(f"compile_mode {self.compile_mode!r}: use one of {', '.join(COMPILE_MODES)}")
        if self.cuda_graph and self.compile and self.compile_mode in ("reduce-overhead", "max-autotune"):
            raise ValueError(
                f"compile_mode {self.compile_mode!r} captures CUDA graphs itself and cannot run inside another "
                "CUDA graph: drop cuda_graph, or use 'default' / 'max-autotune-no-cudagraphs' with it"
            )
        if self.fuse_pointwise:
            object.__setattr__(self, "fold_bn", True)

    def replace(self, **changes: object) -> Levers:
        """A copy with ``changes`` applied (and validated)."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    @property
    def torch_dtype(self) -> torch.dtype:
        import torch  # here, not above: the vocabulary alone must not load torch

        return torch.bfloat16 if self.dtype == "bf16" else torch.float32


EXACT = Levers()  # the network as trained: the reference every lever is checked against
INFERENCE = Levers(fold_bn=True)  # what inference applies by default: same values, fewer passes over memory
FAST = Levers(  # the fastest measured GPU combination (docs/PERFORMANCE.md), applied by `eval/detect --fast`
    dtype="bf16",
    channels_last=True,
    fold_bn=True,
    fuse_pointwise=True,
    stem_s2d=True,
    pointwise_matmul=True,
    fused_pools=True,
    compile=True,
    cuda_graph=True,
)
PRESETS: dict[str, Levers] = {"exact": EXACT, "inference": INFERENCE, "fast": FAST}
