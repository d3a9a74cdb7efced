"""The synthetic dataset's knobs (:class:`SynthConfig`) and its class names, apart from the generator (synth.py)
so that the command line can show them without loading PyAV and OpenCV."""

from __future__ import annotations

from dataclasses import dataclass

MOTIONS = {
    "bounce": "bounces up and down on the floor of its lane",
    "spin": "rotates about its centre",
    "pulse": "grows and shrinks",
    "cross": "travels horizontally across the frame (back and forth when the action is long)",
    "orbit": "circles about a point",
    "shake": "oscillates left and right quickly",
}
CLASS_NAMES = tuple(MOTIONS)
DEFAULT_CLASSES = ("bounce", "spin", "pulse", "cross")


@dataclass(frozen=True)
class SynthConfig:
    videos: int = 50
    seed: int = 0
    height: int = 112
    width: int | None = None  # None: 4:3
    fps: float = 25.0
    min_video_s: float = 20.0
    max_video_s: float = 40.0
    classes: tuple[str, ...] = DEFAULT_CLASSES
    min_action_s: float = 1.5
    max_action_s: float = 8.0
    short_fraction: float = 0.08  # share of short actions, lasting short_min_s .. min_action_s
    short_min_s: float = 0.5
    overlap: float = 0.35  # chance that a slot of the second lane holds an action
    idle_prob: float = 0.5  # chance of a still object before / after an action
    max_idle_s: float = 1.0
    distractors: tuple[int, int] = (1, 3)  # per video, inclusive range
    object_size: float = 0.26  # action objects, fraction of the frame height
    background_contrast: float = 1.0
    same_shapes: bool = False
    splits: tuple[int, int, int] = (3, 1, 1)  # train / validation / test, cycled over video indices
    crf: int = 20

    def __post_init__(self) -> None:
        unknown = [c for c in self.classes if c not in MOTIONS]
        if unknown or not self.classes or len(set(self.classes)) != len(self.classes):
            raise ValueError(f"classes must be distinct names from {list(CLASS_NAMES)}, got {list(self.classes)}")
        if not 0 < self.min_video_s <= self.max_video_s:
            raise ValueError("need 0 < min_video_s <= max_video_s")
        if not 0 < self.short_min_s <= self.min_action_s <= self.max_action_s:
            raise ValueError("need 0 < short_min_s <= min_action_s <= max_action_s")
        if self.height < 32 or self.height % 2:
            raise ValueError(f"height must be even and >= 32, got {self.height}")
        if self.fps <= 0 or self.videos < 1:
            raise ValueError("fps and videos must be positive")

    @property
    def frame_width(self) -> int:
        w = self.width if self.width is not None else round(self.height * 4 / 3)
        return w + (w % 2)  # yuv420p needs even sizes
