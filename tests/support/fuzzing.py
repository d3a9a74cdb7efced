"""Mutated input files for every reader talmts has, shared by tests/test_fuzz_readers.py (a fixed-seed budget in
CI) and bench/fuzz_readers.py (many more cases).

Each :class:`Target` writes a valid sample of its layout into a folder, mutates one of its files with a
``random.Random`` and calls the reader. A reader may accept the file or raise a ``TalmtsError`` subclass; any
other exception (KeyError, TypeError, UnicodeDecodeError, RecursionError, ...) is a bug.

Mutations: byte level (truncate, flip, insert bad UTF-8 or NUL, drop or repeat a line, deep nesting) and
structure level (JSON / YAML: delete a key, change a value's type, NaN / inf / huge / negative numbers, a
duplicated key, a wrong nesting; CSV: change a cell, drop or add cells, drop the header).
"""

from __future__ import annotations

import csv
import io
import json
import random
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

# ---------------------------------------------------------------------------------------------- values
WEIRD_NUMBERS: list[Any] = [0, -1, -1e300, 1e308, 10**400, float("nan"), float("inf"), -float("inf"), 1e-320, 2**63]
WEIRD_STRINGS: list[Any] = ["", " ", "nan", "inf", "-1", "1e999", "x", "\u00e9\u4e2d", "\ud800", "\x00", "a,b", '"']
WEIRD_OTHERS: list[Any] = [None, True, False, [], {}, [[]], [1], [1, 2, 3], {"a": 1}, [None, None], ["1", []]]


def weird_value(rng: random.Random) -> Any:
    pool = rng.choice((WEIRD_NUMBERS, WEIRD_STRINGS, WEIRD_OTHERS))
    return rng.choice(pool)


def weird_text(rng: random.Random) -> str:
    value = weird_value(rng)
    if isinstance(value, str):
        return value
    return rng.choice((str(value), json.dumps(value, allow_nan=True), repr(value)))


# ---------------------------------------------------------------------------------------------- bytes
def mutate_bytes(data: bytes, rng: random.Random) -> bytes:
    """One byte-level change."""
    kind = rng.randrange(9)
    n = len(data)
    at = rng.randrange(n + 1) if n else 0
    if kind == 0:  # truncated
        return data[:at]
    if kind == 1:  # a byte changed
        if not n:
            return b"\xff"
        i = rng.randrange(n)
        return data[:i] + bytes([rng.randrange(256)]) + data[i + 1 :]
    if kind == 2:  # invalid UTF-8 / a BOM / NUL inserted
        return data[:at] + rng.choice((b"\xff\xfe", b"\xc3", b"\xed\xa0\x80", b"\x00", b"\xef\xbb\xbf")) + data[at:]
    lines = data.split(b"\n")
    if kind == 3:  # a line dropped
        del lines[rng.randrange(len(lines))]
        return b"\n".join(lines)
    if kind == 4:  # a line repeated
        i = rng.randrange(len(lines))
        lines.insert(i, lines[i])
        return b"\n".join(lines)
    if kind == 5:  # deep nesting (RecursionError in a naive parser)
        depth = rng.choice((50, 1000, 100_000))
        return data[:at] + b"[" * depth + b"]" * depth + data[at:]
    if kind == 6:  # empty
        return b""
    if kind == 7:  # random bytes
        return rng.randbytes(rng.randrange(1, 200))
    return data[:at] + weird_text(rng).encode("utf-8", "surrogatepass") + data[at:]  # 8: text inserted


# ---------------------------------------------------------------------------------------------- trees
def _paths(tree: Any, prefix: tuple = ()) -> list[tuple]:
    """Paths (keys / indices) of every node below the root."""
    out = []
    if isinstance(tree, dict):
        items = list(tree.items())
    elif isinstance(tree, list):
        items = list(enumerate(tree))
    else:
        return out
    for k, v in items:
        out.append((*prefix, k))
        out.extend(_paths(v, (*prefix, k)))
    return out


def mutate_tree(tree: Any, rng: random.Random) -> Any:
    """One structural change to a JSON / YAML tree (a deep copy is changed)."""
    tree = json.loads(json.dumps(tree))
    paths = _paths(tree)
    kind = rng.randrange(6)
    if not paths or kind == 0:  # the whole document replaced
        return weird_value(rng) if rng.random() < 0.7 else [tree]
    path = rng.choice(paths)
    parent = tree
    for k in path[:-1]:
        parent = parent[k]
    key = path[-1]
    if kind == 1:  # a key or an item removed
        del parent[key]
    elif kind == 2:  # a value replaced by one of another type or range
        parent[key] = weird_value(rng)
    elif kind == 3:  # wrong nesting: the value wrapped in a list or an object
        parent[key] = [parent[key]] if rng.random() < 0.5 else {"value": parent[key]}
    elif kind == 4 and isinstance(parent, dict):  # a key renamed (a typo)
        parent[str(key) + rng.choice(("_", "X", " "))] = parent.pop(key)
    else:  # a string value made odd, or a number negated
        value = parent[key]
        if isinstance(value, str):
            parent[key] = rng.choice((value.upper(), value + "\u00e9", "", value * 3, " " + value))
        elif isinstance(value, int | float) and not isinstance(value, bool):
            parent[key] = -value if rng.random() < 0.5 else value * 1e300
        else:
            parent[key] = weird_value(rng)
    return tree


def dump_json(tree: Any, rng: random.Random) -> bytes:
    text = json.dumps(tree, allow_nan=True)
    if rng.random() < 0.15 and text.startswith("{") and len(text) > 2:  # a duplicated key
        first = text[1:].split(",", 1)[0].rstrip("}")
        if ":" in first:
            text = "{" + first + "," + text[1:]
    return text.encode()


# ---------------------------------------------------------------------------------------------- csv
def mutate_csv(data: bytes, rng: random.Random) -> bytes:
    rows = list(csv.reader(io.StringIO(data.decode())))
    kind = rng.randrange(5)
    if kind == 0 and len(rows) > 1:  # a cell changed
        r = rng.randrange(len(rows))
        if rows[r]:
            rows[r][rng.randrange(len(rows[r]))] = weird_text(rng)
    elif kind == 1:  # a row with cells missing
        r = rng.randrange(len(rows))
        rows[r] = rows[r][: rng.randrange(len(rows[r]) + 1)]
    elif kind == 2:  # a row with extra cells
        r = rng.randrange(len(rows))
        rows[r] = rows[r] + [weird_text(rng) for _ in range(rng.randrange(1, 3))]
    elif kind == 3 and rows:  # the header or a column name changed
        if rows[0]:
            rows[0][rng.randrange(len(rows[0]))] = weird_text(rng)
    else:  # a whole column dropped
        if rows and rows[0]:
            c = rng.randrange(len(rows[0]))
            rows = [[x for i, x in enumerate(r) if i != c] for r in rows]
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue().encode("utf-8", "surrogatepass")


def mutate_file(name: str, data: bytes, rng: random.Random) -> bytes:
    """A structural mutation suited to the file type (most often) or a byte-level one."""
    if rng.random() < 0.35:
        return mutate_bytes(data, rng)
    if name.endswith(".json"):
        return dump_json(mutate_tree(json.loads(data), rng), rng)
    if name.endswith((".yaml", ".yml")):
        tree = mutate_tree(yaml.safe_load(data), rng)
        return yaml.safe_dump(tree, allow_unicode=True).encode("utf-8", "surrogatepass")
    if name.endswith(".csv"):
        return mutate_csv(data, rng)
    return mutate_bytes(data, rng)


# ---------------------------------------------------------------------------------------------- samples
def _csv(rows: list[list[Any]]) -> bytes:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue().encode()


ANET = {
    "version": "VERSION 1.3",
    "taxonomy": [
        {"nodeId": 0, "nodeName": "Root", "parentId": None, "parentName": None},
        {"nodeId": 1, "nodeName": "jump", "parentId": 0, "parentName": "Root"},
        {"nodeId": 2, "nodeName": "wave", "parentId": 0, "parentName": "Root"},
    ],
    "database": {
        "v1": {
            "subset": "training",
            "duration": 12.5,
            "fps": 30.0,
            "annotations": [{"segment": [1.0, 3.5], "label": "jump"}, {"segment": ["4.0", "6.5"], "label": "wave"}],
        },
        "v2": {"subset": "validation", "duration": 8.0, "annotations": [{"segment": [0.5, 1.5], "label": "wave"}]},
        "v3": {"subset": "testing", "annotations": [{"segment": [0, 1], "label": "Ambiguous"}]},
    },
}
DETECTIONS = {
    "version": "talmts",
    "results": {
        "v1": [
            {"label": "jump", "score": 0.9, "segment": [1.0, 3.0]},
            {"label": "wave", "score": 0.2, "segment": [2, 4]},
        ],
        "v2": [],
    },
    "external_data": {},
}
BSN = {
    "v_abc": {
        "duration_second": 12.0,
        "duration_frame": 360,
        "feature_frame": 352,
        "annotations": [{"segment": [1.0, 2.5], "label": "jump"}],
    },
    "v_def": {"duration_second": 6.0, "duration_frame": 180, "feature_frame": 176, "annotations": []},
}
BSN_INFO = [
    ["video", "numFrame", "seconds", "fps", "rfps", "subset", "featureFrame"],
    ["v_abc", 360, 12.0, 30.0, 30, "training", 352],
    ["v_def", 180, 6.0, 30.0, 30, "validation", 176],
]
THUMOS_ANNOTATION = [
    ["video", "type", "type_idx", "start", "end", "startFrame", "endFrame"],
    ["video_validation_0000051", "BaseballPitch", 1, 67.5, 75.9, 2025, 2277],
    ["video_validation_0000051", "Ambiguous", 0, 80.1, 81.0, 2403, 2430],
    ["video_validation_0000052", "Diving", 8, 1.0, 3.0, 30, 90],
]
AFSD_INFO = [
    ["video", "fps", "sample_fps", "count", "sample_count"],
    ["video_validation_0000051", 30.0, 10.0, 5091, 1697],
    ["video_validation_0000052", 29.97, 10.0, 900, 300],
]
THUMOS_GROUNDTRUTH = [
    ["video-name", "t-init", "t-end", "f-init", "f-end", "video-duration", "frame-rate", "video-frames", "label-idx"],
    ["video_test_0000004", 0.2, 1.1, 6, 33, 33.5, 30.0, 1005, 7],
    ["video_test_0000004", 2.0, 3.3, 60, 99, 33.5, 30.0, 1005, -1],
]
TABLE = [
    ["video", "subset", "label", "start", "end", "duration", "fps"],
    ["kitchen_01", "train", "chop", 12.5, 17.0, 95.2, 25],
    ["kitchen_01", "train", "stir", 30.1, 41.8, 95.2, ""],
    ["kitchen_07", "test", "", "", "", 60.0, ""],
]
SCORES = {"results": {"v_abc": [0.7, 0.2, 0.1], "def": [0.1, 0.1, 0.8]}, "class": ["jump", "wave", "run"]}
CONFIG = {
    "_base_": "base.yaml",
    "data": {"root": "prepared", "fps": 5.0, "clip_frames": 64, "classes": ["jump", "wave"], "val_subset": None},
    "model": {"levels": 4, "fsa": {"patch": 16}, "backbone": {"width": 0.25}},
    "loss": {"ranges": None},
    "train": {"epochs": 2, "lr": 1.0e-3, "grad_clip": 5.0, "ema": None},
    "infer": {"nms_sigma": 0.3, "video_top_k": 1},
    "eval": {"tiou": [0.3, 0.5, 0.7]},
}
CONFIG_BASE = {"data": {"frame_size": 48, "stored_size": 56}, "model": {"channels": 64, "groups": 16}}
PREPARE_RECORD = {"fps": 10.0, "size": 112, "max_frames": None, "flow": "tvl1"}
META = {
    "video": "a",
    "fps": 30.0,
    "sample_fps": 10.0,
    "count": 300,
    "sample_count": 100,
    "decode": {"decoded_frames": 300, "fps": 30.0, "declared_frames": 300, "declared_seconds": 10.0, "short": False},
}
OVERRIDE_KEYS = [
    "data.fps",
    "data.classes",
    "data.protocol",
    "model.fsa.patch",
    "model.levels",
    "train.lr",
    "train.epochs",
    "infer.fusion",
    "loss.ranges",
    "eval.tiou",
    "data",
    "nope.key",
    "train.lr.x",
    "",
    "model..fsa",
]


@dataclass
class Target:
    """A reader under test: its sample files (name -> bytes) and how to call it on a folder holding them."""

    name: str
    files: dict[str, bytes]
    read: Callable[[Path], object]
    args: Callable[[random.Random], object] | None = None  # extra generated input (config overrides)


def _read_thumos_csv(d: Path) -> object:
    from talmts.formats.thumos import read_thumos_csv

    return read_thumos_csv(d / "val_Annotation_ours.csv")


def _read_class_files(d: Path) -> object:
    from talmts.formats import read_annotations

    return read_annotations(d / "classes")


def _collect_prepare_record(d: Path) -> object:
    from talmts.data.prepare import collect_rows, read_decode_check
    from talmts.data.record import PrepareOptions, claim_folder, read_record

    read_record(d)
    claim_folder(d, PrepareOptions(fps=10.0, size=112, flow="tvl1"))
    (d / "frames").mkdir(exist_ok=True)
    (d / "frames" / "a.npy").touch()
    read_decode_check(d, "a")
    return collect_rows(d)


def _load_config(d: Path, overrides: list[str] | None = None) -> object:
    from talmts.config import load_config

    return load_config(d / "config.yaml", overrides)


def targets() -> list[Target]:
    """Every reader, with a valid sample (``Target.read`` on the unmutated files succeeds)."""
    from talmts.formats import read_annotations, read_class_list, read_detections
    from talmts.formats.video_info import read_video_info
    from talmts.postprocess.classifier import load_video_scores

    per_class = {
        "classes/BaseballPitch_val.txt": b"video_validation_0000051 67.5 75.9\nvideo_validation_0000051 80.0 82.5\n",
        "classes/Ambiguous_val.txt": b"video_validation_0000051 90.1 91.0\n",
        "classes/Diving_test.txt": b"video_test_0000004  0.2 1.1\n\n",
    }
    yaml_dump = lambda tree: yaml.safe_dump(tree).encode()  # noqa: E731
    return [
        Target("activitynet_json", {"gt.json": json.dumps(ANET).encode()}, lambda d: read_annotations(d / "gt.json")),
        Target(
            "thumos_csv",
            {"val_Annotation_ours.csv": _csv(THUMOS_ANNOTATION), "val_video_info.csv": _csv(AFSD_INFO)},
            _read_thumos_csv,
        ),
        Target(
            "thumos_groundtruth_csv",
            {"thumos14_test_groundtruth.csv": _csv(THUMOS_GROUNDTRUTH)},
            lambda d: read_annotations(d / "thumos14_test_groundtruth.csv"),
        ),
        Target("thumos_class_files", per_class, _read_class_files),
        Target(
            "bsn_json",
            {"anet_anno_action.json": json.dumps(BSN).encode(), "video_info_new.csv": _csv(BSN_INFO)},
            lambda d: read_annotations(d / "anet_anno_action.json"),
        ),
        Target("table_csv", {"mine.csv": _csv(TABLE)}, lambda d: read_annotations(d / "mine.csv")),
        Target(
            "detections_json", {"det.json": json.dumps(DETECTIONS).encode()}, lambda d: read_detections(d / "det.json")
        ),
        Target(
            "video_info_csv",
            {"video_info.csv": _csv(AFSD_INFO), "video_info_new.csv": _csv(BSN_INFO)},
            lambda d: (read_video_info(d / "video_info.csv"), read_video_info(d / "video_info_new.csv", max_frames=64)),
        ),
        Target(
            "config_yaml",
            {"config.yaml": yaml_dump(CONFIG), "base.yaml": yaml_dump(CONFIG_BASE)},
            _load_config,
            args=lambda rng: [
                f"{rng.choice(OVERRIDE_KEYS)}{rng.choice(('=', '=', ':', ''))}{weird_text(rng)}"
                for _ in range(rng.randrange(3))
            ],
        ),
        Target(
            "prepare_record",
            {"prepare.json": json.dumps(PREPARE_RECORD).encode(), "meta/a.json": json.dumps(META).encode()},
            _collect_prepare_record,
        ),
        Target(
            "video_scores_json",
            {"scores.json": json.dumps(SCORES).encode()},
            lambda d: load_video_scores(d / "scores.json"),
        ),
        Target(
            "class_list",
            {"Class Index_Detection.txt": b"7 BaseballPitch\n9 BasketballDunk\n\n12 Billiards\n"},
            lambda d: read_class_list(d / "Class Index_Detection.txt"),
        ),
    ]


def write_case(target: Target, folder: Path, rng: random.Random) -> tuple[str, object]:
    """Write ``target``'s files into ``folder`` with one of them mutated; returns (mutated file, extra args)."""
    names = sorted(target.files)
    victim = rng.choice(names)
    for name in names:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        data = target.files[name]
        path.write_bytes(mutate_file(name, data, rng) if name == victim else data)
    return victim, (target.args(rng) if target.args else None)


class ReaderHangs(Exception):
    """A reader ran past the time limit of one case (e.g. computing 2 ** (a huge number))."""


def _alarm(signum: int, frame: object) -> None:
    raise ReaderHangs(f"no answer within {CASE_SECONDS} s")


CASE_SECONDS = 30.0  # the pure-Python YAML parser needs seconds to refuse 200 KB of nested brackets


def run_case(target: Target, folder: Path, rng: random.Random) -> BaseException | bool:
    """One mutated case: the untyped exception the reader raised, else True (accepted) or False (a TalmtsError).

    A reader that takes more than CASE_SECONDS is stopped and reported as :class:`ReaderHangs`.
    """
    from talmts.errors import TalmtsError

    _, extra = write_case(target, folder, rng)
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, CASE_SECONDS)
    try:
        target.read(folder) if extra is None else target.read(folder, extra)  # type: ignore[call-arg]
    except TalmtsError:
        return False
    except Exception as e:  # noqa: BLE001 - exactly what the fuzzing looks for
        return e
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    return True
