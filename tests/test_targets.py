"""Target assignment (AFSD's rule) against a slow per-anchor loop, and the refined targets by hand."""

from __future__ import annotations

import math

import pytest
import torch

from talmts.losses import anchor_levels, assign_coarse, check_targets, refine_targets

ANET_RANGES = [[0, 30], [15, 60], [30, 120], [60, 240], [96, 768], [256, 768]]


def make_anchors(clip: int, sizes: tuple[int, ...]) -> torch.Tensor:
    return torch.cat([(torch.arange(t, dtype=torch.float32) + 0.5) * clip / t for t in sizes])


def slow_assign(anchors, gt, levels=None, ranges=None):
    """Reference written as plain loops: the shortest containing ground truth wins, ties to the first."""
    labels, loc = [], []
    for k, a in enumerate(anchors.tolist()):
        best, best_len = None, math.inf
        for m, (s, e, _c) in enumerate(gt.tolist()):
            left, right = a - s, e - a
            if left < 0 or right < 0:
                continue
            if ranges is not None:
                lo, hi = ranges[int(levels[k])]
                if not lo < max(left, right) <= hi:
                    continue
            if left + right < best_len:
                best, best_len = m, left + right
        if best is None:
            labels.append(0)
            loc.append((0.0, 0.0))
        else:
            s, e, c = gt[best].tolist()
            labels.append(int(c))
            loc.append((a - s, e - a))
    return torch.tensor(labels), torch.tensor(loc)


def random_gt(gen: torch.Generator, clip: int, m: int, classes: int) -> torch.Tensor:
    s = torch.rand(m, generator=gen) * clip
    length = torch.rand(m, generator=gen) ** 2 * clip * 0.6
    e = torch.clamp(s + length, max=clip)
    c = torch.randint(1, classes + 1, (m,), generator=gen).float()
    gt = torch.stack([s, e, c], 1)
    # integer frames as real annotations have, so exact ties in length occur too
    gt[:, :2] = gt[:, :2].round()
    return gt


@pytest.mark.parametrize("seed", range(6))
def test_assignment_matches_slow_loop(seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    sizes = (64, 32, 16, 8, 4, 2)
    anchors = make_anchors(256, sizes)
    gt = random_gt(gen, 256, int(torch.randint(1, 12, (1,), generator=gen)), 20)
    t = assign_coarse(anchors, gt)
    labels, loc = slow_assign(anchors, gt)
    assert torch.equal(t.labels, labels)
    assert torch.allclose(t.loc, loc)
    assert ((t.gt_index >= 0) == (labels > 0)).all()


@pytest.mark.parametrize("seed", range(4))
def test_assignment_with_level_ranges_matches_slow_loop(seed: int) -> None:
    gen = torch.Generator().manual_seed(100 + seed)
    sizes = (96, 48, 24, 12, 6, 3)  # ActivityNet: T = 768, Mixed_5c only
    anchors = make_anchors(768, sizes)
    levels = anchor_levels(sizes)
    gt = random_gt(gen, 768, 5, 1)
    t = assign_coarse(anchors, gt, levels, ANET_RANGES)
    labels, loc = slow_assign(anchors, gt, levels, ANET_RANGES)
    assert torch.equal(t.labels, labels)
    assert torch.allclose(t.loc, loc)
    # the ranges really exclude something here: without them more anchors are positive
    assert (assign_coarse(anchors, gt).labels > 0).sum() > (labels > 0).sum()


def test_shortest_ground_truth_wins_and_edges_count() -> None:
    anchors = torch.tensor([2.0, 6.0, 10.0])
    # a long GT [0, 12) of class 1 and a short one [4, 8] of class 2; the anchor at 10 sits on the end of neither
    gt = torch.tensor([[0.0, 12.0, 1.0], [4.0, 8.0, 2.0], [10.0, 10.0, 3.0]])
    t = assign_coarse(anchors, gt)
    # anchor 2: only GT 0 -> (2, 10); anchor 6: GT 1 is shorter -> (2, 2); anchor 10: the zero-length GT 2
    # contains it (left = right = 0) and is shortest
    assert t.labels.tolist() == [1, 2, 3]
    assert t.loc.tolist() == [[2.0, 10.0], [2.0, 2.0], [0.0, 0.0]]
    assert t.gt_index.tolist() == [0, 1, 2]


def test_no_ground_truth_is_all_background() -> None:
    t = assign_coarse(make_anchors(64, (16, 8)), torch.zeros(0, 3))
    assert (t.labels == 0).all() and (t.loc == 0).all() and (t.gt_index == -1).all()


def test_refined_targets_by_hand() -> None:
    anchors = torch.tensor([2.0, 6.0])
    coarse = assign_coarse(anchors, torch.tensor([[0.0, 4.0, 1.0], [5.0, 9.0, 2.0]]))
    # anchor 2 -> target (2, 2); anchor 6 -> target (1, 3)
    pred = torch.tensor([[1.0, 3.0], [4.0, 0.5]])
    r = refine_targets(pred, coarse, 0.5)
    # anchor 2: inter = min(1,2) + min(3,2) = 3, union = 4 + 4 - 3 = 5 -> 0.6 >= 0.5: refined positive
    #           delta = ((2 - 1) / 2, (2 - 3) / 2) = (0.5, -0.5)   (0.5 w = 2)
    # anchor 6: inter = min(4,1) + min(0.5,3) = 1.5, union = 4.5 + 4 - 1.5 = 7 -> 0.214 < 0.5: not refined
    #           delta = ((1 - 4) / 2.25, (3 - 0.5) / 2.25)
    assert r.coarse_iou.tolist() == pytest.approx([0.6, 1.5 / 7])
    assert r.labels.tolist() == [1, 0]
    assert r.offsets.flatten().tolist() == pytest.approx([0.5, -0.5, -3 / 2.25, 2.5 / 2.25])
    # AFSD-ANet: the threshold drops to the best coarse tIoU of the clip when that is lower
    r2 = refine_targets(pred, coarse, 0.7, mode="min_max")
    assert r2.labels.tolist() == [1, 0]  # threshold min(0.7, 0.6) = 0.6
    assert refine_targets(pred, coarse, 0.7).labels.tolist() == [0, 0]
    with pytest.raises(ValueError, match="refined_iou_mode"):
        refine_targets(pred, coarse, 0.5, mode="other")


def test_bad_targets_are_named() -> None:
    with pytest.raises(ValueError, match=r"targets\[3\], row 1: end"):
        check_targets(torch.tensor([[0.0, 4.0, 1.0], [5.0, 2.0, 1.0]]), 20, clip=3)
    with pytest.raises(ValueError, match="class_index 0.0 is not an action class 1..20"):
        check_targets(torch.tensor([[0.0, 4.0, 0.0]]), 20)
    with pytest.raises(ValueError, match="class_index 21.0"):
        check_targets(torch.tensor([[0.0, 4.0, 21.0]]), 20)
    with pytest.raises(ValueError, match=r"\[M, 3\]"):
        check_targets(torch.zeros(2, 2), 20)


def test_bad_target_messages_in_full_and_what_passes() -> None:
    with pytest.raises(ValueError) as e:
        check_targets(torch.tensor([[0.0, 4.0, 1.0], [5.0, 2.0, 1.0]]), 20)
    assert str(e.value) == "targets, row 1: end 2.0 is before start 5.0"
    with pytest.raises(ValueError) as e:
        check_targets(torch.tensor([[0.0, 4.0, 1.0], [1.0, 3.0, 0.0]]), 2, clip=0)
    assert str(e.value) == (
        "targets[0], row 1: class_index 0.0 is not an action class 1..2 (0 is background and never a ground truth)"
    )
    check_targets(torch.tensor([[10.0, 10.0, 3.0]]), 3)  # a zero-length segment is allowed (an anchor on it)
    check_targets(torch.zeros(0, 3), 3)


def test_ranges_exclude_the_lower_bound_and_include_the_upper() -> None:
    """AFSD's comparison: lo < max(left, right) <= hi."""
    anchors = torch.tensor([4.0, 20.0])  # level 0 and level 1
    levels = torch.tensor([0, 1])
    gt = torch.tensor([[0.0, 8.0, 1.0], [10.0, 30.0, 2.0]])  # max(left, right): 4 for anchor 4, 10 for anchor 20
    assert assign_coarse(anchors, gt, levels, [[0, 4], [10, 20]]).labels.tolist() == [1, 0]
    assert assign_coarse(anchors, gt, levels, [[4, 8], [9, 10]]).labels.tolist() == [0, 2]
    with pytest.raises(ValueError, match=r"^assign_coarse: ranges need the level of every anchor \(levels\)$"):
        assign_coarse(anchors, gt, None, [[0, 4], [10, 20]])


def test_background_has_no_ground_truth_index_and_tiny_widths_are_exact() -> None:
    anchors = torch.tensor([2.0, 6.0, 20.0])
    coarse = assign_coarse(anchors, torch.tensor([[0.0, 4.0, 1.0], [5.0, 9.0, 2.0]]))
    assert coarse.gt_index.tolist() == [0, 1, -1]
    # a coarse prediction 0.5 frames wide: delta = (target - pred) / 0.25, no clamp involved
    r = refine_targets(torch.tensor([[0.2, 0.3], [1.0, 3.0], [1.0, 1.0]]), coarse, 0.5)
    assert r.offsets[0].tolist() == pytest.approx([(2 - 0.2) / 0.25, (2 - 0.3) / 0.25])
    assert r.offsets[2].tolist() == pytest.approx([-1.0, -1.0])  # background: (0 - 1) / 1, never used
