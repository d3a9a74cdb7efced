"""The ActivityNet ground-truth layout, read and written.

``{"version", "taxonomy"?, "database": {vid: {"subset", "duration"?, "fps"?, "annotations": [{"segment", "label"}]}}}``

The same reader serves the official ``activity_net.v1-3.min.json``, files derived from it, ActionFormer's
``thumos14.json`` (subsets "Validation"/"Test", extra keys ignored) and AFSD's ``thumos_gt.json`` (segments stored as
strings, no duration). Subset names are normalised to train/validation/test.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from talmts.fileio import atomic_write_json
from talmts.formats.classes import check_labels
from talmts.formats.common import AMBIGUOUS, as_float, load_json_streamed, parse_pair, require
from talmts.schema import AnnotationSet, ClassMap, SchemaError, Segment, Video, check_segment, normalize_subset

# How each normalised subset is spelled when written (the official file's spelling).
_WRITTEN_SUBSET = {"train": "training", "validation": "validation", "test": "testing"}


def taxonomy_leaves(taxonomy: Any, *, file: str) -> list[str]:
    """Names of the leaf nodes of an ActivityNet taxonomy, in file order (the action classes).

    The taxonomy is optional metadata: the official evaluator never reads it, and talmts uses it only to order the
    classes. So a node without ``parentId`` is a root, and a taxonomy that cannot give class names (not a list, a
    node without ``nodeName``) is ignored with a warning: the classes are then the sorted labels.
    """
    if not isinstance(taxonomy, list) or not all(isinstance(n, dict) for n in taxonomy):
        return _ignored(file, "taxonomy", "it is not a list of nodes")
    if not all(isinstance(n.get("nodeName"), str) for n in taxonomy):
        i = next(i for i, n in enumerate(taxonomy) if not isinstance(n.get("nodeName"), str))
        return _ignored(file, f"taxonomy[{i}]", "the node has no nodeName")
    ids = (int, float, str, type(None))  # numbers in the official file, names in some derived ones
    for i, n in enumerate(taxonomy):
        if not isinstance(n.get("nodeId"), ids) or not isinstance(n.get("parentId"), ids):
            return _ignored(file, f"taxonomy[{i}]", "its nodeId or parentId is neither a number nor a name")
    parents = {n["parentId"] for n in taxonomy if n.get("parentId") is not None}
    return [n["nodeName"] for n in taxonomy if n.get("nodeId") is None or n["nodeId"] not in parents]


def _ignored(file: str, where: str, why: str) -> list[str]:
    warnings.warn(f"{file}: {where}: {why}; the taxonomy is ignored (classes: the sorted labels)", stacklevel=3)
    return []


def _class_order(taxonomy: Any, labels: list[tuple[str, str]], *, file: str) -> list[str]:
    """The taxonomy's leaves when they name every label, else nothing (the sorted labels), with a warning."""
    leaves = taxonomy_leaves(taxonomy, file=file) if taxonomy else []
    missing = sorted({lab for _, lab in labels if lab != AMBIGUOUS} - set(leaves))
    if leaves and missing:
        return _ignored(file, "taxonomy", f"its leaves lack the labels {missing[:5]}")
    if len(set(leaves)) != len(leaves):
        twice = sorted({n for n in leaves if leaves.count(n) > 1})
        return _ignored(file, "taxonomy", f"the leaves {twice[:5]} appear twice")
    return leaves


def parse_activitynet(
    data: Any, *, file: str, classes: ClassMap | None = None, exclude_ambiguous: bool = True
) -> AnnotationSet:
    """Turn a loaded ActivityNet-layout object into an AnnotationSet (see the module doc)."""
    database = require(data, "database", file=file, record="<top level>", kind=dict)
    reader = VideoEntries(file, exclude_ambiguous)
    videos = {vid: reader(vid, entry) for vid, entry in database.items()}
    return reader.annotation_set(videos, data.get("taxonomy"), classes)


class VideoEntries:
    """Reads the ``database`` entries of one file, one video at a time (formats.common.load_json_streamed hands
    them over as they are parsed), and remembers each label's first record for the class checks."""

    def __init__(self, file: str, exclude_ambiguous: bool = True):
        self.file, self.exclude_ambiguous = file, exclude_ambiguous
        self.first_record: dict[str, str] = {}  # label -> its first record (what an error about it names)
        self._names: dict[str, str] = {}

    def __call__(self, vid: str, entry: Any) -> Video:
        file = self.file
        subset = normalize_subset(require(entry, "subset", file=file, record=vid, kind=str), file=file, record=vid)
        duration = fps = None
        if entry.get("duration") is not None:
            duration = as_float(entry["duration"], file=file, record=vid, field_name="duration")
            if duration < 0:
                raise SchemaError(file, vid, "duration", f"negative duration {duration}", "durations are >= 0 s")
        if entry.get("fps") is not None:
            fps = as_float(entry["fps"], file=file, record=vid, field_name="fps")
            if fps <= 0:
                raise SchemaError(file, vid, "fps", f"fps {fps} is not positive", "use frames per second > 0")
        anns = require(entry, "annotations", file=file, record=vid, kind=list)
        segments = []
        for i, ann in enumerate(anns):
            record = f"{vid} annotation {i}"
            label = require(ann, "label", file=file, record=record, kind=str)
            start, end = parse_pair(require(ann, "segment", file=file, record=record), file=file, record=record)
            check_segment(start, end, file=file, record=record)
            if label == AMBIGUOUS and self.exclude_ambiguous:
                continue
            self.first_record.setdefault(label, record)
            segments.append(Segment(start, end, self._names.setdefault(label, label)))  # one str object a label
        return Video(vid, subset, duration, fps, segments)

    def annotation_set(self, videos: dict[str, Video], taxonomy: Any, classes: ClassMap | None) -> AnnotationSet:
        """The videos with their class map: ``classes``, else the taxonomy's leaves, else the sorted labels. The
        first record of each label stands for all of them: the first label that fails is named either way."""
        labels = [(record, label) for label, record in self.first_record.items()]
        fallback = _class_order(taxonomy, labels, file=self.file) if classes is None else ()
        class_map = check_labels(labels, classes, file=self.file, fallback=fallback)
        return AnnotationSet(videos, class_map, source=self.file)


def read_activitynet(
    path: str | Path, *, classes: ClassMap | None = None, exclude_ambiguous: bool = True
) -> AnnotationSet:
    """Read an ActivityNet-layout ground-truth JSON file, one video at a time (formats.common.load_json_streamed)."""
    reader = VideoEntries(str(path), exclude_ambiguous)
    top, videos = load_json_streamed(path, "database", reader)
    if videos is None:
        return parse_activitynet(top, file=str(path), classes=classes, exclude_ambiguous=exclude_ambiguous)
    return reader.annotation_set(videos, top.get("taxonomy"), classes)


def ground_truth_to_json(annotations: AnnotationSet, version: str = "talmts") -> dict[str, Any]:
    """The ActivityNet layout as a plain dict; the class map travels as a flat taxonomy (one leaf per class)."""
    taxonomy = [
        {"nodeId": i + 1, "nodeName": name, "parentId": 0, "parentName": "Root"}
        for i, name in enumerate(annotations.classes.names)
    ]
    database: dict[str, Any] = {}
    for vid, video in annotations.videos.items():
        if video.subset not in _WRITTEN_SUBSET:
            raise SchemaError("<AnnotationSet>", vid, "subset", f"unknown subset {video.subset!r}")
        entry: dict[str, Any] = {"subset": _WRITTEN_SUBSET[video.subset]}
        if video.duration is not None:
            entry["duration"] = float(video.duration)
        if video.fps is not None:
            entry["fps"] = float(video.fps)
        entry["annotations"] = [
            {"segment": [float(s.start), float(s.end)], "label": s.label} for s in video.annotations
        ]
        database[vid] = entry
    return {"version": version, "taxonomy": taxonomy, "database": database}


def write_ground_truth(annotations: AnnotationSet, path: str | Path, version: str = "talmts") -> None:
    """Write ground truth in the ActivityNet layout, atomically (temporary file + rename)."""
    atomic_write_json(path, ground_truth_to_json(annotations, version), indent=None)
