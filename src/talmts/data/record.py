"""What ``talmts prepare`` did to a dataset's videos, written once, carried by every checkpoint, checked in one place.

A network trained on frames sampled at 10 fps sees other motion at 5 fps, and its mAP drops without an error; a flow
stream trained on TV-L1 flow sees other numbers in DIS flow. So ``prepare`` writes its options to
``OUT_DIR/prepare.json``, training copies them into the checkpoint, and evaluation and detection compare (or, for a
raw video, reuse) them.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from talmts.data.flow import DEFAULT_FLOW, FLOW_METHODS
from talmts.data.video import MAX_FRAME_SIZE, SAMPLE_FPS
from talmts.errors import InputError, TalmtsError
from talmts.fileio import atomic_write_json
from talmts.schema import is_number, is_whole

RECORD_FILE = "prepare.json"
SAMPLING_KEYS = ("fps", "size", "max_frames")  # what every stream must share; "flow" matters to a flow stream
MAX_FRAMES = 10_000_000  # --max-frames: ActivityNet uses 768; 10**7 frames at 112 px are 376 GB
# flow methods a network accepts in place of each other: tvl1-torch agrees with OpenCV's tvl1 to a few hundredths
# of a pixel (docs/DESIGN.md, "TV-L1 in PyTorch")
FLOW_FAMILIES = {"tvl1-torch": "tvl1"}


def flow_family(method: str) -> str:
    return FLOW_FAMILIES.get(method, method)


class PreparationMismatch(TalmtsError, ValueError):
    """Data prepared with other options than the ones a network was trained on, or than the folder already holds."""


@dataclass(frozen=True)
class PrepareOptions:
    """How videos are turned into stored frames and flow (AFSD's THUMOS14 recipe by default)."""

    fps: float | None = 10.0  # sample rate; None with max_frames = the video's own rate (AFSD's ActivityNet scheme)
    size: int = 112  # frames are resized to size x size (aspect not kept, as AFSD)
    flow: str = DEFAULT_FLOW  # the flow method, or "none"
    max_frames: int | None = None  # ActivityNet dynamic fps: at most this many frames per video

    def __post_init__(self) -> None:
        """Every option checked when it is made, before anything is decoded or written (``prepare --fps inf``
        would loop for ever, ``--fps 0`` keep no frame, ``--size 100000`` ask for 30 GB a frame)."""
        lo, hi = SAMPLE_FPS
        if self.fps is not None and not (is_number(self.fps) and lo <= self.fps <= hi):
            raise InputError(f"prepare option fps={self.fps!r}: the sample rate must be a number in [{lo:g}, {hi:g}]")
        if not (is_whole(self.size) and 1 <= self.size <= MAX_FRAME_SIZE):
            raise InputError(f"prepare option size={self.size!r}: frames are 1 to {MAX_FRAME_SIZE} pixels wide")
        if self.max_frames is not None and not (is_whole(self.max_frames) and 1 <= self.max_frames <= MAX_FRAMES):
            raise InputError(f"prepare option max_frames={self.max_frames!r}: a whole number in [1, {MAX_FRAMES:,}]")
        if self.flow not in (*FLOW_METHODS, "none"):
            raise InputError(f"prepare option flow={self.flow!r}: choose one of {[*FLOW_METHODS, 'none']}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any], source: str = "prepare record") -> PrepareOptions:
        """From a stored record; keys it lacks take the defaults (records written before a key existed). A record
        whose options are not valid ones raises InputError naming ``source``."""
        if not isinstance(raw, dict):
            raise InputError(f"{source}: the prepare options must be a mapping, not a {type(raw).__name__}")
        known = {f.name for f in fields(cls)}
        try:
            return cls(**{k: v for k, v in raw.items() if k in known})
        except InputError as e:
            raise InputError(f"{source}: {e}") from None

    def differences(self, other: PrepareOptions, *, flow: bool) -> list[str]:
        """The keys on which ``other`` differs (``flow`` too when a flow stream reads the data)."""
        diff = [k for k in SAMPLING_KEYS if getattr(self, k) != getattr(other, k)]
        return diff + (["flow"] if flow and flow_family(self.flow) != flow_family(other.flow) else [])


def record_path(root: str | Path) -> Path:
    return Path(root) / RECORD_FILE


def read_record(root: str | Path) -> PrepareOptions | None:
    """The options a prepared folder was made with, or None when it has no record (older folders)."""
    path = record_path(root)
    if not path.is_file():
        return None
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError) as e:  # ValueError: bad UTF-8, bad JSON, a 5,000-digit integer
        raise PreparationMismatch(
            f"{path}: unreadable prepare record ({type(e).__name__}); rerun `talmts prepare`"
        ) from None
    if not isinstance(raw, dict):
        raise PreparationMismatch(f"{path}: the prepare record must be a JSON object; rerun `talmts prepare`")
    try:
        return PrepareOptions.from_dict(raw, source=str(path))
    except InputError as e:
        raise PreparationMismatch(f"{e}; rerun `talmts prepare` into a new folder") from None


def write_record(root: str | Path, options: PrepareOptions) -> None:
    atomic_write_json(record_path(root), options.to_dict())


def check_same_preparation(
    trained: PrepareOptions | None, here: PrepareOptions | None, *, flow: bool, where: str, source: str
) -> None:
    """Raise when data at ``where`` was prepared unlike the data ``source`` (a checkpoint) was trained on.

    Nothing is compared when either side has no record (a checkpoint or a folder older than the record).
    """
    if trained is None or here is None:
        return
    for key in here.differences(trained, flow=flow):
        raise PreparationMismatch(
            f"{where}: {key}={getattr(here, key)!r}, but {source} was trained on data prepared with "
            f"{key}={getattr(trained, key)!r}; prepare the test videos with the training data's options "
            f"({', '.join(f'{k}={v!r}' for k, v in trained.to_dict().items())})"
        )


def flow_to_resume(out_dir: str | Path) -> str:
    """The flow method of a run that names none: the folder's own when it holds flow already (a folder prepared
    before the default changed resumes with the same implementation), else the default."""
    have = read_record(out_dir)
    return have.flow if have is not None and have.flow != "none" else DEFAULT_FLOW


def claim_folder(out_dir: str | Path, options: PrepareOptions) -> PrepareOptions:
    """Refuse to mix sample rates, sizes or flow methods in one prepared folder; record the options on first use.

    A run with ``flow="none"`` adds frames to a folder that already holds flow: the folder keeps its flow method.
    Returns the record now in the folder.
    """
    have = read_record(out_dir)
    record = options
    if have is not None:
        for key in SAMPLING_KEYS:
            if getattr(have, key) != getattr(options, key):
                raise PreparationMismatch(
                    f"{out_dir} was prepared with {key}={getattr(have, key)!r}, this run asks "
                    f"{key}={getattr(options, key)!r}; use another output folder or the same options"
                )
        if options.flow != "none" and have.flow not in ("none", options.flow):
            raise PreparationMismatch(
                f"{out_dir} holds {have.flow} flow, this run asks --flow {options.flow};"
                " use another output folder or the same method"
            )
        if options.flow == "none":
            record = PrepareOptions(**{**options.to_dict(), "flow": have.flow})
    write_record(out_dir, record)
    return record
