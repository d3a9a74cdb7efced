"""``talmts view``: a static results site from detections, ground truth and (optionally) the videos.

OUT/index.html lists the videos (AP, true and false positives at one tIoU, sortable) of the subset scored (by
default the subsets the detection file's videos belong to, what ``talmts eval`` scored when it wrote the file; the
headers name it and its number of videos); OUT/videos/<id>.html shows
one video: the player, a timeline of ground truth and detections per class drawn in the page, a score slider and
the table of detections; OUT/diagnosis.html and OUT/diagnosis/*.png hold DETAD's error diagnosis. The pages show
paths relative to themselves and nothing else of the machine that wrote them. ``talmts detect`` writes the video
page for one video with :func:`write_video_view`.

A site is written whole (:func:`site_folder`): under OUT's lock (a second ``view`` into OUT is refused), into a
hidden folder inside OUT, then swapped in entry by entry, so pages of an earlier run never stay behind and a link
planted at an entry's name (``OUT/videos`` -> elsewhere) is replaced, never followed. Entries are replaced only in
a folder that holds a site already (or none of them); anything else in OUT is left alone.
"""

from __future__ import annotations

import dataclasses
import os
import re
import secrets
import shutil
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from talmts.errors import InputError, TalmtsError
from talmts.evaluation.diagnose import ERROR_TYPES, Diagnosis, diagnose, match_detections, per_video
from talmts.evaluation.matches import Matches
from talmts.fileio import TMP_MARK, folder_lock
from talmts.geometry import official_tiou
from talmts.schema import AnnotationSet, ClassMap, Detection, Segment, Video, normalize_subset
from talmts.viz.diagnosis_plots import plot_diagnosis
from talmts.viz.view import write_page

DEFINITIONS = [  # DETAD's, as the diagnosis page states them
    ("true positive", "matches a ground truth of its class and video with tIoU ≥ α not taken by a better-scored one"),
    ("double detection", "tIoU ≥ α with a ground truth of its label, which another detection already took"),
    ("wrong label", "tIoU ≥ α with a ground truth of another label"),
    ("localization", "0.1 ≤ tIoU < α with a ground truth of its label"),
    ("confusion", "0.1 ≤ tIoU < α with a ground truth of another label"),
    ("background", "tIoU < 0.1 with every ground truth of its video"),
    ("which ground truth decides", "the one of the video, any class, with the highest tIoU with the detection"),
    (
        "mAP gain",
        "average mAP with the detections of one type removed (the others keep their matches), minus the average mAP",
    ),
    (
        "AP_N",
        "AP whose precision counts the true positives as if every class had the set's mean number of ground "
        "truths: R·N / (R·N + FP)",
    ),
]


INDEX_COLUMNS = [
    ("video", "video", "link"),
    ("duration", "seconds", "num1"),
    ("ground_truth", "ground truths", "int"),
    ("detections", "detections", "int"),
    ("tp", "TP", "int"),
    ("fp", "FP", "int"),
    ("missed", "missed", "int"),
    ("ap", "AP (%)", "pct"),
    ("types", "false positives by type", "types"),
]
INDEX_TOTALS = [
    ("ground_truth", "ground truths"),
    ("detections", "detections"),
    ("tp", "true positives"),
    ("fp", "false positives"),
    ("missed", "missed"),
]


@dataclass
class ViewOutputs:
    index: Path
    diagnosis_page: Path
    videos: dict[str, Path] = field(default_factory=dict)
    pictures: dict[str, Path] = field(default_factory=dict)
    diagnosis: Diagnosis | None = None
    scope: str = "all videos"  # what was scored: "the test subset", "the test and validation subsets", "all videos"
    scored_videos: int = 0  # the ground-truth videos in it


def view_scope(
    ground_truth: AnnotationSet, detections: Mapping[str, Sequence[Detection]], subset: str | None = None
) -> tuple[AnnotationSet, str]:
    """The ground truth a view scores, and its name for the headers: ``subset`` when given; else the subsets the
    detection file's videos belong to (a file ``talmts eval`` wrote covers the split it scored, and the other
    splits' videos would only count as missed); else, when none of its videos has ground truth, every video."""
    if subset is not None:
        name = normalize_subset(subset, file="--subset", record=subset)
        if not ground_truth.subset(name).videos:
            present = sorted({v.subset for v in ground_truth.videos.values()})
            raise InputError(f"{ground_truth.source}: no video in subset {name!r} (subsets present: {present})")
        return ground_truth.subset(name), f"the {name} subset"
    covered = sorted({ground_truth.videos[v].subset for v in detections if v in ground_truth.videos})
    if not covered:
        return ground_truth, "all videos"
    videos = {k: v for k, v in ground_truth.videos.items() if v.subset in covered}
    names = " and ".join(covered)
    return AnnotationSet(
        videos, ground_truth.classes, ground_truth.source
    ), f"the {names} subset{'s' * (len(covered) > 1)}"


def view_files(
    detections: str | Path,
    ground_truth: str | Path,
    out_dir: str | Path,
    *,
    videos_dir: str | Path | None = None,
    tiou: float = 0.5,
    subset: str | None = None,
    bins: str = "auto",
    min_score: float = 0.1,
    title: str = "talmts view",
) -> ViewOutputs:
    """``talmts view``: the site of a detection file against a ground-truth file (:func:`build_view`), with the
    players of the videos found in ``videos_dir``."""
    from talmts.data.prepare import find_videos
    from talmts.formats import read_annotations, read_detections

    if videos_dir and not Path(videos_dir).is_dir():
        raise InputError(f"--videos {videos_dir}: no such folder (give the folder that holds the videos)")
    return build_view(
        read_detections(detections),
        read_annotations(ground_truth),
        out_dir,
        videos=find_videos(videos_dir) if videos_dir else None,
        tiou=tiou,
        subset=subset,
        bins=bins,
        min_score=min_score,
        title=title,
    )


def build_view(
    detections: dict[str, list[Detection]],
    ground_truth: AnnotationSet,
    out_dir: str | Path,
    *,
    videos: Mapping[str, Path] | None = None,
    tiou: float = 0.5,
    subset: str | None = None,
    bins: str = "auto",
    min_score: float = 0.1,
    title: str = "talmts view",
) -> ViewOutputs:
    """Write the whole site into ``out_dir``; ``videos``: video id -> file, for the players. ``subset``: the ground
    truth's subset to score (default: the ones the detections cover, see :func:`view_scope`). The site is built
    beside and swapped in whole (:func:`site_folder`)."""
    check_page_options(tiou=tiou, min_score=min_score)
    final = Path(out_dir)
    options = {"videos": videos, "tiou": tiou, "subset": subset, "bins": bins, "min_score": min_score, "title": title}
    with site_folder(final) as stage:
        res = _build_site(detections, ground_truth, stage, players_from=final / "videos", **options)
    return dataclasses.replace(
        res,
        index=final / res.index.relative_to(stage),
        diagnosis_page=final / res.diagnosis_page.relative_to(stage),
        videos={k: final / p.relative_to(stage) for k, p in res.videos.items()},
        pictures={k: final / p.relative_to(stage) for k, p in res.pictures.items()},
    )


def _build_site(
    detections: dict[str, list[Detection]],
    ground_truth: AnnotationSet,
    out: Path,
    *,
    players_from: Path,
    videos: Mapping[str, Path] | None,
    tiou: float,
    subset: str | None,
    bins: str,
    min_score: float,
    title: str,
) -> ViewOutputs:
    """The site's pages into ``out``; ``players_from``: the folder the video pages will be served from (their links
    to the videos are relative to it)."""
    scored, scope = view_scope(ground_truth, detections, subset)
    diag = diagnose(scored, detections, [tiou], bins=bins)
    m = diag.matches
    names = _page_names(m.videos)
    res = ViewOutputs(out / "index.html", out / "diagnosis.html", diagnosis=diag, scope=scope)
    res.scored_videos = len(scored.videos)
    header = f"scored on {scope}: {res.scored_videos} videos, mAP {100 * diag.mAP[0]:.1f} % at tIoU {tiou:g}"
    for v, row in enumerate(diag.videos):
        vid = row["video"]
        page = out / "videos" / f"{names[vid]}.html"
        src = relative_link(videos[vid], players_from) if videos and vid in videos else None
        data = video_data(m, v, min_score=min_score, src=src) | {"ap": row["ap"]}
        nav = [("index", "../index.html"), ("diagnosis", "../diagnosis.html"), (vid, None)]
        res.videos[vid] = write_page(page, kind="video", title=vid, data=data, nav=nav)
    diag_json = diag.to_json()
    res.pictures = plot_diagnosis(diag_json, out / "diagnosis")
    write_page(
        res.diagnosis_page,
        kind="diagnosis",
        title=f"{title}: diagnosis",
        subtitle=header,
        nav=[("index", "index.html"), ("diagnosis", None)],
        data={
            "diagnosis": diag_json,
            "definitions": [(k, v.replace("α", f"α = {tiou:g}")) for k, v in DEFINITIONS],
            "bins_text": _bins_text(diag.sensitivity),
            "pictures": [p.relative_to(out).as_posix() for p in res.pictures.values()],
        },
    )
    types = _types_per_video(m)
    rows = [
        r | {"duration": m.durations.get(r["video"]), "href": f"videos/{names[r['video']]}.html", "types": types[v]}
        for v, r in enumerate(diag.videos)
    ]
    total = {k: sum(r[k] for r in rows) for k, _ in INDEX_TOTALS}
    write_page(
        res.index,
        kind="index",
        title=title,
        subtitle=header,
        nav=[("index", None), ("diagnosis", "diagnosis.html")],
        data={
            "tiou": tiou,
            "rows": rows,
            "columns": INDEX_COLUMNS,
            "scope": scope,
            "scored_videos": res.scored_videos,
            "stats": [
                [f"{100 * diag.mAP[0]:.1f} %", f"mAP at tIoU {tiou:g}"],
                [res.scored_videos, f"videos scored ({scope})"],
                *[[total[k], label] for k, label in INDEX_TOTALS],
            ],
            "note": f"Counts at tIoU {tiou:g} over all detections. A video's AP is the mean, over the classes with "
            "ground truth in it, of the AP of its own detections. Click a column to sort; click a video to see it.",
        },
    )
    return res


# What a site consists of in OUT; the hidden folders a run builds in and moves the previous site into
SITE_ENTRIES = ("index.html", "diagnosis.html", "videos", "diagnosis")
_BUILDING, _REPLACED = f".site{TMP_MARK}", f".replaced{TMP_MARK}"
_INDEX_MARK = "<script type='application/json' id='talmts-data'>{\"page\":\"index\""


@contextmanager
def site_folder(out: Path, command: str = "talmts view") -> Iterator[Path]:
    """Yield an empty hidden folder inside ``out`` to build a site in; when the block ends without an error, swap
    its entries in for the site's old ones (which are deleted: no stale page stays) and remove it.

    ``out`` is locked for the whole time (fileio.folder_lock: a second run is refused, naming the first). An entry
    of the site's names that exists where no site is (a folder of the user's that happens to be called
    ``videos``) is refused before anything is written. A link at an entry's name is moved away and deleted as a
    link: its target is never written to or removed.
    """
    _check_site_folder(out)  # before the lock: a refused folder gets no lock file either
    with folder_lock(out, command):
        _check_site_folder(out)  # again, now that no other run can be swapping
        for p in out.iterdir():  # leftovers of a run that died while building or swapping
            if p.is_symlink() or not p.name.startswith((_BUILDING, _REPLACED)):
                continue
            if p.name.startswith(_REPLACED) and any(p.iterdir()):  # the only copy of an earlier site's entries
                raise SiteSwapError(
                    f"{p}: entries of an earlier site, left by a run stopped while swapping: move them back into "
                    f"{out} or delete the folder"
                )
            shutil.rmtree(p, ignore_errors=True)
        tag = f"{os.getpid()}-{secrets.token_hex(4)}"
        stage, replaced = out / f"{_BUILDING}{tag}", out / f"{_REPLACED}{tag}"
        stage.mkdir()
        keep_replaced = False
        try:
            yield stage
            replaced.mkdir()
            _swap_in(stage, out, replaced)
        except SiteSwapError:
            keep_replaced = True  # it holds the only copy of what the rollback could not put back
            raise
        finally:
            shutil.rmtree(stage, ignore_errors=True)
            if not keep_replaced:
                shutil.rmtree(replaced, ignore_errors=True)  # never follows a link inside


class SiteSwapError(TalmtsError):
    """The new site could not be moved in, nor the earlier one put back whole."""


def _swap_in(stage: Path, out: Path, replaced: Path) -> None:
    """Move the site's old entries from ``out`` into ``replaced`` and the new ones from ``stage`` into ``out``, one
    by one; if that stops for any reason (a full disk, Ctrl-C), the new entries already in place go and the old
    ones come back, so ``out`` holds the old site whole. What cannot be put back stays in ``replaced``."""
    moved_out: list[str] = []
    moved_in: list[str] = []
    try:
        for name in SITE_ENTRIES:
            if os.path.lexists(out / name):
                os.replace(out / name, replaced / name)  # a link moves as a link
                moved_out.append(name)
            if os.path.lexists(stage / name):
                os.replace(stage / name, out / name)
                moved_in.append(name)
    except BaseException:
        failed = []
        for name in moved_in:  # built by this run: plain files and folders, never links
            new = out / name
            try:
                shutil.rmtree(new) if new.is_dir() and not new.is_symlink() else new.unlink()
            except OSError:
                failed.append(name)
        for name in moved_out:
            try:
                os.replace(replaced / name, out / name)
            except OSError:
                failed.append(name)
        if failed:
            raise SiteSwapError(
                f"{out}: the new site could not be moved in, nor the earlier one put back ({', '.join(failed)}); "
                f"the earlier entries are in {replaced}: move them back by hand"
            ) from None
        raise


def _check_site_folder(out: Path) -> None:
    """Refuse a folder that holds something at a site entry's name but no site (a user's own ``videos``)."""
    present = [n for n in SITE_ENTRIES if os.path.lexists(out / n)]
    if present and not _is_site(out):
        raise InputError(
            f"{out / present[0]} exists and {out} holds no site of talmts view: write the site into another "
            "folder (--out), or remove it"
        )


def _is_site(out: Path) -> bool:
    """OUT/index.html is the index page of a talmts view site (a plain file, not a link)."""
    index = out / "index.html"
    if index.is_symlink() or not index.is_file():
        return False
    with open(index, encoding="utf-8", errors="replace") as f:
        return _INDEX_MARK in f.read(1 << 20)


def check_page_options(*, tiou: float = 0.5, min_score: float = 0.1) -> None:
    """The tIoU threshold in (0, 1] and the score slider's start in [0, 1], as numbers (NaN is neither)."""
    if not 0 < tiou <= 1:
        raise InputError(f"--tiou {tiou}: a tIoU threshold is a number in (0, 1]")
    if not 0 <= min_score <= 1:
        raise InputError(f"--min-score {min_score}: a score threshold is a number in [0, 1]")


def video_data(m: Matches, v: int, *, t: int = 0, min_score: float = 0.1, src: str | None = None) -> dict[str, Any]:
    """What a video page draws: its ground truth (with the detection that found it) and its detections (type,
    matched ground truth, closest ground truth) at threshold ``t``; indices are positions in the page's lists."""
    g = np.flatnonzero(m.gt_video == v)
    d = np.flatnonzero(m.det_video == v)
    local_gt = {int(row): k for k, row in enumerate(g)}
    matched_by = {int(m.matched[t, row]): k for k, row in enumerate(d) if m.matched[t, row] >= 0}
    seg = m.gt_seg
    detections = []
    for row in d:
        hit, best = int(m.matched[t, row]), int(m.best_gt[row])
        detections.append(
            {
                "label": m.det_label[row],
                "start": float(m.det_seg[row, 0]),
                "end": float(m.det_seg[row, 1]),
                "score": float(m.det_score[row]),
                "type": ERROR_TYPES[m.error[t, row]],
                "matched": local_gt.get(hit),
                "matched_tiou": _tiou(m.det_seg[row], seg[hit]) if hit >= 0 else None,
                "best": local_gt.get(best),
                "best_tiou": float(m.best_tiou[row]),
            }
        )
    ground_truth = [
        {"label": m.classes[m.gt_class[row]], "start": float(seg[row, 0]), "end": float(seg[row, 1]),
         "matched_by": matched_by.get(int(row))}
        for row in g
    ]  # fmt: skip
    labels = [c for c in m.classes if any(x["label"] == c for x in ground_truth + detections)]
    labels += sorted({x["label"] for x in detections} - set(labels))
    return {
        "video": m.videos[v],
        "duration": m.durations.get(m.videos[v]),
        "tiou": float(m.tiou[t]),
        "classes": labels,
        "has_ground_truth": bool(g.size),
        "ground_truth": ground_truth,
        "detections": detections,
        "min_score": min_score,
        "src": src,
    }


def write_video_view(
    path: str | Path,
    video_id: str,
    detections: Sequence[Detection],
    *,
    ground_truth: Sequence[Segment] | None = None,
    duration: float | None = None,
    video_src: str | None = None,
    captions_src: str | None = None,
    notes: Mapping[str, str] | None = None,
    tiou: float = 0.5,
    min_score: float = 0.1,
    nav: Sequence[tuple[str, str | None]] = (),
) -> Path:
    """One video's page outside a site (``talmts detect``): judged against ``ground_truth`` when it has any."""
    check_page_options(tiou=tiou, min_score=min_score)
    if ground_truth:
        gt = AnnotationSet(
            {video_id: Video(video_id, "test", duration=duration, annotations=list(ground_truth))},
            ClassMap.from_labels(s.label for s in ground_truth),
        )
        m = match_detections(gt, {video_id: list(detections)}, [tiou])
        data = video_data(m, 0, min_score=min_score, src=video_src)
        data["ap"] = per_video(m)[0]["ap"]
    else:
        data = {
            "video": video_id,
            "duration": duration,
            "tiou": tiou,
            "classes": sorted({d.label for d in detections}),
            "has_ground_truth": False,
            "ground_truth": [],
            "detections": [
                {"label": d.label, "start": d.start, "end": d.end, "score": d.score, "type": None} for d in detections
            ],
            "min_score": min_score,
            "src": video_src,
            "ap": None,
        }
    data |= {"captions": captions_src, "notes": dict(notes or {})}
    return write_page(path, kind="video", title=video_id, data=data, nav=[*nav, (video_id, None)])


def _types_per_video(m: Matches, t: int = 0) -> list[dict[str, int]]:
    """Each video's false positives by type at threshold ``t``."""
    counts = np.zeros((len(m.videos), len(ERROR_TYPES)), dtype=np.int64)
    np.add.at(counts, (m.det_video, m.error[t]), 1)
    return [{name: int(row[k]) for k, name in enumerate(ERROR_TYPES) if k and row[k]} for row in counts]


def _tiou(a: np.ndarray, b: np.ndarray) -> float:
    """The scoring tIoU of two segments, a zero union (a match at every threshold) shown as 1."""
    return float(min(official_tiou(a[None], b[None])[0, 0], 1.0))


def _page_names(videos: Sequence[str]) -> dict[str, str]:
    """File names for video ids: unsafe characters replaced, clashes numbered."""
    names: dict[str, str] = {}
    used: set[str] = set()
    for v in videos:
        base = re.sub(r"[^A-Za-z0-9._-]", "_", v).strip(".") or "video"
        name, k = base, 1
        while name.lower() in used:
            k += 1
            name = f"{base}-{k}"
        used.add(name.lower())
        names[v] = name
    return names


def relative_link(target: str | Path, start: str | Path) -> str | None:
    """``target`` as a link from a page in folder ``start``: relative, with forward slashes (None across drives
    on Windows: a page shows no absolute path). Paths are made absolute, not resolved: a browser follows the page's
    own path, and a link at ``start`` (which the site replaces) must not bend the result."""
    try:
        return Path(os.path.relpath(os.path.abspath(target), os.path.abspath(start))).as_posix()
    except ValueError:
        return None


def _bins_text(sens: dict[str, Any]) -> str:
    parts = []
    for name in ("length", "coverage", "instances"):
        s = sens[name]
        edges = s["edges"]
        cells = [
            f"{b} > {edges[i]:g}" if edges[i + 1] is None else f"{b} ({max(edges[i], 0):g}, {edges[i + 1]:g}]"
            for i, b in enumerate(s["bins"])
        ]
        parts.append(f"{name} " + ", ".join(cells))
    return f"{sens['set']}: " + "; ".join(parts)
