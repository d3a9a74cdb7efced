"""Plain records shared by every stage: videos, ground-truth segments, detections, class maps.

No torch here. Times are in seconds. Readers in ``talmts.formats`` turn real files into these records and
raise :class:`SchemaError` (naming the file, the record and the field) when a file is wrong.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from talmts.errors import TalmtsError
from talmts.subsets import SUBSETS as SUBSETS  # re-exported: the canonical names
from talmts.subsets import canonical_subset, subset_help

BACKGROUND = 0  # class index 0 is background; action classes are 1..num_classes


class SchemaError(TalmtsError, ValueError):
    """A record in an input file is wrong. The message names the file, the record, the field and the fix."""

    def __init__(self, file: str, record: str, field_name: str, problem: str, fix: str = ""):
        self.file, self.record, self.field, self.problem = file, record, field_name, problem
        msg = f"{file}: record {record!r}, field {field_name!r}: {problem}"
        if fix:
            msg += f" ({fix})"
        super().__init__(msg)


@dataclass(frozen=True, slots=True)  # slots: a million instances fit in a fraction of the memory
class Segment:
    """One ground-truth action instance."""

    start: float
    end: float
    label: str

    @property
    def length(self) -> float:
        return self.end - self.start


@dataclass(frozen=True, slots=True)  # slots: 64 bytes an object instead of 150, for files of millions
class Detection:
    """One predicted action instance in a video."""

    start: float
    end: float
    label: str
    score: float


@dataclass
class Video:
    """A video, its subset and its ground truth (empty when unknown)."""

    id: str
    subset: str
    duration: float | None = None
    fps: float | None = None
    annotations: list[Segment] = field(default_factory=list)


@dataclass(frozen=True)
class ClassMap:
    """Action class names in a fixed order; index 0 is background, names[i] has index i + 1."""

    names: tuple[str, ...]

    def __post_init__(self) -> None:
        if len(set(self.names)) != len(self.names):
            dup = sorted({n for n in self.names if self.names.count(n) > 1})
            raise ValueError(f"class map has duplicate names: {dup}")

    def __len__(self) -> int:
        return len(self.names)

    def __contains__(self, name: object) -> bool:
        return name in self._index

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    @property
    def _index(self) -> Mapping[str, int]:
        # Cached on first use; a frozen dataclass needs object.__setattr__ for that.
        cache = self.__dict__.get("_cache")
        if cache is None:
            cache = {n: i + 1 for i, n in enumerate(self.names)}
            object.__setattr__(self, "_cache", cache)
        return cache

    def index(self, name: str) -> int:
        """1-based class index of ``name`` (0 is background)."""
        try:
            return self._index[name]
        except KeyError:
            raise KeyError(f"label {name!r} is not in the class map ({len(self.names)} classes)") from None

    def name(self, index: int) -> str:
        if not 1 <= index <= len(self.names):
            raise IndexError(f"class index {index} is outside 1..{len(self.names)}")
        return self.names[index - 1]

    @classmethod
    def from_labels(cls, labels: Iterable[str]) -> ClassMap:
        """Sorted unique labels: a deterministic map when a file has no class list of its own."""
        return cls(tuple(sorted(set(labels))))


@dataclass
class AnnotationSet:
    """All videos of a dataset with their ground truth, and the class map."""

    videos: dict[str, Video]
    classes: ClassMap
    source: str = ""

    def subset(self, name: str) -> AnnotationSet:
        return AnnotationSet({k: v for k, v in self.videos.items() if v.subset == name}, self.classes, self.source)

    def num_instances(self) -> int:
        return sum(len(v.annotations) for v in self.videos.values())


def normalize_subset(value: str, *, file: str = "<input>", record: str = "?") -> str:
    """The canonical subset name (train, validation, test) of any spelling :mod:`talmts.subsets` accepts."""
    name = canonical_subset(value)
    if name is None:
        raise SchemaError(file, record, "subset", f"unknown subset {value!r}", subset_help())
    return name


def check_segment(start: float, end: float, *, file: str, record: str, field_name: str = "segment") -> None:
    """Raise SchemaError for negative times or an end before the start."""
    if start < 0 or end < 0:
        raise SchemaError(file, record, field_name, f"negative time [{start}, {end}]", "times are seconds >= 0")
    if end < start:
        raise SchemaError(file, record, field_name, f"end {end} is before start {start}", "swap or fix the pair")


# ------------------------------------------------------------------------------------------ values read from JSON
def is_number(value: object) -> bool:
    """A JSON number: an int or a float, never a bool (which Python counts as an int)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def is_whole(value: object) -> bool:
    """A JSON integer, never a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


# ----------------------------------------------------------------------------------------------- video ids
# A video id names files (frames/<id>.npy, meta/<id>.json, <id>.npz, ...), so it must be one plain file name. The
# bytes bound leaves room, within the 255 bytes of a file name, for a suffix and a temporary's ".tmp-<pid>-<hex>".
VIDEO_ID_MAX_BYTES = 200


def video_id_problem(video: object) -> str | None:
    """Why ``video`` cannot be used as a file name, or None when it can: the one rule for video ids."""
    if not isinstance(video, str) or not video:
        return "it is empty" if video == "" else f"it is a {type(video).__name__}, not text"
    if "/" in video or "\\" in video:
        return "it holds a path separator ('/' or '\\')"
    if video.startswith("."):
        return "it starts with '.' (hidden files and talmts' temporary files do)"
    if any(ord(c) < 32 or ord(c) == 127 for c in video):
        return "it holds a control character (a newline, a tab, NUL, ...)"
    try:
        size = len(video.encode("utf-8"))
    except UnicodeEncodeError:
        return "it is not valid Unicode text"
    if size > VIDEO_ID_MAX_BYTES:
        return f"it is {size} bytes long (at most {VIDEO_ID_MAX_BYTES})"
    return None


def check_video_id(video: object, *, file: str = "<input>", record: str | None = None) -> str:
    """``video`` when it can name a file, else a SchemaError naming the file, the record and the id."""
    problem = video_id_problem(video)
    if problem is not None:
        shown = repr(video)[:80]
        raise SchemaError(
            file,
            record if record is not None else shown,
            "video",
            f"the video id {shown} cannot name a file: {problem}",
            "video ids become file names; rename the video in every file that lists it",
        )
    return video  # type: ignore[return-value]


def video_file(folder: str | Path, video: str, suffix: str, *, file: str = "<input>") -> Path:
    """``folder/<video><suffix>``, after :func:`check_video_id`: an id never leads a path out of ``folder``."""
    return Path(folder) / f"{check_video_id(video, file=file)}{suffix}"
