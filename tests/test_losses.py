"""Loss terms on hand-computed cases, compute_losses end to end, empty clips, and a tiny overfitting run."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from talmts.config import LossConfig, load_config
from talmts.geometry import refine_distances
from talmts.losses import (
    LOSS_KEYS,
    compute_losses,
    giou_loss,
    quality_loss,
    refined_loc_loss,
    softmax_focal_loss,
)
from talmts.outputs import DetectorOutput

LN3 = math.log(3.0)


def anchors_for(clip: int, sizes: tuple[int, ...]) -> torch.Tensor:
    return torch.cat([(torch.arange(t, dtype=torch.float32) + 0.5) * clip / t for t in sizes])


def output_from(loc, conf, prop_loc, prop_conf, quality, clip: int, sizes: tuple[int, ...]) -> DetectorOutput:
    return DetectorOutput(
        loc=loc,
        conf=conf,
        prop_loc=prop_loc,
        prop_conf=prop_conf,
        quality=quality,
        anchors=anchors_for(clip, sizes),
        level_sizes=sizes,
        clip_frames=clip,
    )


def test_focal_loss_by_hand() -> None:
    logits = torch.tensor([[0.0, LN3], [LN3, 0.0]])
    # row 0, target 1 (action): softmax = (1/4, 3/4), p_t = 0.75, alpha_t = 1 - 0.25 = 0.75
    #   -0.75 * (1 - 0.75)^2 * ln 0.75 = 0.75 * 0.0625 * 0.2876821 = 0.0134851
    # row 1, target 0 (background): p_t = 0.75, alpha_t = 0.25: 0.25 * 0.0625 * 0.2876821 = 0.0044950
    one = softmax_focal_loss(logits[:1], torch.tensor([1]))
    two = softmax_focal_loss(logits, torch.tensor([1, 0]))
    assert one.item() == pytest.approx(0.75 * 0.0625 * -math.log(0.75), rel=1e-6)
    assert two.item() == pytest.approx(0.0134851 + 0.0044950, abs=1e-6)
    # a wrong, confident background: target 0 with p_0 = 1/4: 0.25 * 0.75^2 * ln 4 = 0.1949476
    assert softmax_focal_loss(logits[:1], torch.tensor([0])).item() == pytest.approx(0.1949476, abs=1e-6)
    # gamma = 0 and alpha = 0.5 is half the cross-entropy
    ce = torch.nn.functional.cross_entropy(logits, torch.tensor([1, 0]), reduction="sum")
    assert softmax_focal_loss(logits, torch.tensor([1, 0]), gamma=0.0, alpha=0.5).item() == pytest.approx(ce.item() / 2)


def test_giou_loss_by_hand() -> None:
    # pred (1, 3), target (2, 2) around one anchor: inter = 1 + 2 = 3, union = 4 + 4 - 3 = 5, tIoU = 0.6.
    # Both contain the anchor, so the hull is the union and GIoU = IoU: loss 0.4.
    # pred (1, 1) vs target (4, 4): inter 2, union 8, tIoU 0.25: loss 0.75.
    pred = torch.tensor([[1.0, 3.0], [1.0, 1.0]])
    target = torch.tensor([[2.0, 2.0], [4.0, 4.0]])
    assert giou_loss(pred, target).item() == pytest.approx(0.4 + 0.75)


def test_refined_loc_loss_by_hand() -> None:
    pred = torch.tensor([[0.5, 2.0]])
    target = torch.zeros(1, 2)
    # smooth L1, beta 1: 0.5 * 0.5^2 = 0.125 and 2 - 0.5 = 1.5; L1: 0.5 + 2
    assert refined_loc_loss(pred, target).item() == pytest.approx(1.625)
    assert refined_loc_loss(pred, target, "l1").item() == pytest.approx(2.5)
    # beta 0.25: |0.5| and |2| are both above it: 0.5 - 0.125 + 2 - 0.125
    assert refined_loc_loss(pred, target, beta=0.25).item() == pytest.approx(2.25)
    with pytest.raises(ValueError, match="refined_loc"):
        refined_loc_loss(pred, target, "l2")


def test_quality_loss_by_hand() -> None:
    # sigmoid(ln 3) = 0.75, target 0.6: -(0.6 ln 0.75 + 0.4 ln 0.25) = 0.1726092 + 0.5545177
    assert quality_loss(torch.tensor([LN3]), torch.tensor([0.6])).item() == pytest.approx(0.7271269, abs=1e-6)


def hand_case(requires_grad: bool = False) -> tuple[DetectorOutput, list[torch.Tensor]]:
    """One clip of T = 8 frames, one level of two anchors (centres 2 and 6), one ground truth [0, 4] of class 1."""
    t = {
        "loc": torch.tensor([[[1.0, 3.0], [2.0, 2.0]]]),
        "conf": torch.tensor([[[0.0, LN3], [LN3, 0.0]]]),
        "prop_loc": torch.zeros(1, 2, 2),
        "prop_conf": torch.tensor([[[0.0, LN3], [LN3, 0.0]]]),
        "quality": torch.tensor([[LN3, 0.0]]),
    }
    if requires_grad:
        t = {k: v.requires_grad_() for k, v in t.items()}
    return output_from(**t, clip=8, sizes=(2,)), [torch.tensor([[0.0, 4.0, 1.0]])]


def test_compute_losses_by_hand() -> None:
    out, targets = hand_case()
    terms = compute_losses(out, targets, LossConfig())
    assert set(terms) == set(LOSS_KEYS)
    # anchor 2 is inside [0, 4] -> class 1, target (2, 2); anchor 6 is background. N_c = 1.
    # coarse tIoU of (1, 3) with (2, 2) = 0.6 >= 0.5 -> refined positive, N_r = 1, delta* = (0.5, -0.5).
    focal = 0.0134851 + 0.0044950  # test_focal_loss_by_hand, both rows
    assert terms["coarse_cls"].item() == pytest.approx(focal, abs=1e-6)
    assert terms["refined_cls"].item() == pytest.approx(focal, abs=1e-6)
    assert terms["coarse_loc"].item() == pytest.approx(0.4)
    # prop_loc = 0 against (0.5, -0.5): smooth L1 0.125 + 0.125
    assert terms["refined_loc"].item() == pytest.approx(0.25)
    # refined box = coarse box [1, 5] (delta 0) vs GT [0, 4]: tIoU 3/5 = 0.6; logit ln 3 -> 0.7271269
    assert terms["quality"].item() == pytest.approx(0.7271269, abs=1e-6)
    assert terms["total"].item() == pytest.approx(2 * focal + 10 * (0.4 + 0.25) + 0.7271269, abs=1e-5)
    # the paper's THUMOS weights come from the config
    cfg = LossConfig(alpha=1.0, beta=2.0)
    assert compute_losses(out, targets, cfg)["total"].item() == pytest.approx(
        2 * focal + (0.4 + 0.25) + 2 * 0.7271269, abs=1e-5
    )


def test_options_l1_and_quality_on_coarse_positives() -> None:
    out, targets = hand_case()
    # move anchor 2's coarse prediction so that it is a coarse but not a refined positive:
    # (0.5, 6) vs (2, 2): inter 2.5, union 6.5 + 4 - 2.5 = 8 -> 0.3125
    out.loc[0, 0] = torch.tensor([0.5, 6.0])
    cfg = LossConfig(refined_loc="l1", quality_on="coarse")
    terms = compute_losses(out, targets, cfg)
    assert terms["refined_loc"].item() == 0.0  # no refined positive
    # refined_cls: both anchors are background for the refined head now; N_r clamps to 1
    # anchor 0: logits (0, ln 3), p_0 = 0.25: 0.25 * 0.75^2 * ln 4 = 0.1949476; anchor 1: 0.0044950
    assert terms["refined_cls"].item() == pytest.approx(0.1949476 + 0.0044950, abs=1e-6)
    # quality over the coarse positive: box [1.5, 8] vs [0, 4]: inter 2.5, union 8 -> 0.3125
    q = -(0.3125 * math.log(0.75) + 0.6875 * math.log(0.25))
    assert terms["quality"].item() == pytest.approx(q, abs=1e-6)
    # with the paper's normalisation (refined positives) there is nothing to score
    assert compute_losses(out, targets, LossConfig())["quality"].item() == 0.0


def test_quality_target_is_detached() -> None:
    out, targets = hand_case(requires_grad=True)
    compute_losses(out, targets, LossConfig())["quality"].backward()
    assert out.quality.grad is not None and out.quality.grad.abs().sum() > 0
    for name in ("loc", "prop_loc", "conf", "prop_conf"):
        g = getattr(out, name).grad
        assert g is None or not g.any(), name


def test_refined_target_decodes_to_the_ground_truth() -> None:
    """The sign convention: predicting the loss's delta* makes eq. 13 land on the ground truth (tIoU 1)."""
    gen = torch.Generator().manual_seed(0)
    sizes = (8, 4)
    out = output_from(
        loc=torch.rand(1, 12, 2, generator=gen) * 8 + 1,
        conf=torch.zeros(1, 12, 3),
        prop_loc=torch.zeros(1, 12, 2),
        prop_conf=torch.zeros(1, 12, 3),
        quality=torch.zeros(1, 12),
        clip=32,
        sizes=sizes,
    )
    gt = torch.tensor([[3.0, 17.0, 1.0], [20.0, 30.0, 2.0]])
    from talmts.losses import assign_coarse, refine_targets

    coarse = assign_coarse(out.anchors, gt)
    refined = refine_targets(out.loc[0], coarse, 0.0)
    pos = coarse.labels > 0
    d = refine_distances(out.loc[0][pos], refined.offsets[pos])
    start, end = out.anchors[pos] - d[:, 0], out.anchors[pos] + d[:, 1]
    truth = gt[coarse.gt_index[pos]]
    assert torch.allclose(start, truth[:, 0], atol=1e-4) and torch.allclose(end, truth[:, 1], atol=1e-4)
    out.prop_loc[0] = refined.offsets
    out.quality[0] = 50.0  # sigmoid = 1: BCE against tIoU 1 is ~0 only if the decoded boxes match exactly
    terms = compute_losses(out, [gt], LossConfig(refined_iou=0.0))
    assert terms["refined_loc"].item() == pytest.approx(0.0, abs=1e-8)
    assert terms["quality"].item() < 1e-4


def test_clip_without_ground_truth_is_finite() -> None:
    gen = torch.Generator().manual_seed(1)
    sizes = (16, 8, 4)
    k = sum(sizes)
    params = {
        "loc": torch.rand(2, k, 2, generator=gen) * 10,
        "conf": torch.randn(2, k, 5, generator=gen),
        "prop_loc": torch.randn(2, k, 2, generator=gen),
        "prop_conf": torch.randn(2, k, 5, generator=gen),
        "quality": torch.randn(2, k, generator=gen),
    }
    params = {n: v.requires_grad_() for n, v in params.items()}
    out = output_from(**params, clip=64, sizes=sizes)
    for targets in ([torch.zeros(0, 3), torch.zeros(0, 3)], [torch.zeros(0, 3), torch.tensor([[4.0, 30.0, 2.0]])]):
        terms = compute_losses(out, targets, LossConfig())
        assert all(torch.isfinite(v) for v in terms.values())
        terms["total"].backward()
        assert all(torch.isfinite(p.grad).all() for p in params.values())
        for p in params.values():
            p.grad = None
    terms = compute_losses(out, [torch.zeros(0, 3)] * 2, LossConfig())
    assert terms["coarse_loc"].item() == terms["refined_loc"].item() == terms["quality"].item() == 0.0
    assert terms["coarse_cls"].item() > 0  # every anchor is a background sample


def test_ranges_need_one_pair_per_level() -> None:
    out, targets = hand_case()
    with pytest.raises(ValueError, match="loss.ranges has 2 pairs but the network has 1 levels"):
        compute_losses(out, targets, LossConfig(ranges=[[0, 4], [4, 8]]))
    with pytest.raises(ValueError, match="2 target tensors for a batch of 1"):
        compute_losses(out, targets * 2, LossConfig())


class StandIn(nn.Module):
    """Learnable raw outputs for one clip: the loss alone must be able to drive them to the targets."""

    def __init__(self, clip: int, sizes: tuple[int, ...], classes: int) -> None:
        super().__init__()
        k = sum(sizes)
        self.clip, self.sizes = clip, sizes
        self.log_loc = nn.Parameter(torch.full((1, k, 2), math.log(4.0)))
        self.conf = nn.Parameter(torch.zeros(1, k, classes + 1))
        self.prop_loc = nn.Parameter(torch.zeros(1, k, 2))
        self.prop_conf = nn.Parameter(torch.zeros(1, k, classes + 1))
        self.quality = nn.Parameter(torch.zeros(1, k))

    def forward(self) -> DetectorOutput:
        return output_from(
            self.log_loc.exp(), self.conf, self.prop_loc, self.prop_conf, self.quality, self.clip, self.sizes
        )


def test_loss_decreases_when_overfitting_a_stand_in() -> None:
    torch.manual_seed(0)
    model = StandIn(64, (16, 8, 4, 2), 3)
    targets = [torch.tensor([[4.0, 20.0, 1.0], [30.0, 40.0, 3.0], [44.0, 60.0, 2.0]])]
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    history = []
    for _ in range(60):
        terms = compute_losses(model(), targets, LossConfig())
        opt.zero_grad()
        terms["total"].backward()
        opt.step()
        history.append({k: v.item() for k, v in terms.items()})
    first, last = history[0], history[-1]
    assert last["total"] < 0.05 * first["total"]
    for k in ("coarse_cls", "refined_cls", "coarse_loc"):
        assert last[k] < 0.2 * first[k], k


def test_loss_decreases_on_the_real_network() -> None:
    """The real TAL-MTS at toy size (every module on) learns one clip. refined_iou = 0 makes every coarse positive
    a refined one from the first step, so the set of terms does not change under the optimiser's feet."""
    from talmts.models import build_detector

    torch.manual_seed(0)
    cfg = load_config(
        None,
        [
            "data.clip_frames=64", "data.frame_size=32", "data.stored_size=32", "model.backbone.width=0.25",
            "model.channels=32", "model.levels=4", "model.groups=8", "model.fsa.patch=16", "model.fsa.dim=32",
            "model.fsa.out_channels=32", "model.stt.dim=32", "model.stt.heads=4", "model.fsa.heads=4",
            "loss.refined_iou=0.0",
        ],
    )  # fmt: skip
    net = build_detector(cfg, num_classes=3, in_channels=3)
    clip = torch.rand(1, 3, 64, 32, 32) * 2 - 1
    targets = [torch.tensor([[4.0, 20.0, 1.0], [30.0, 50.0, 3.0]])]
    opt = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=3e-3)
    totals = []
    for _ in range(6):
        terms = compute_losses(net(clip), targets, cfg.loss)
        opt.zero_grad()
        terms["total"].backward()
        opt.step()
        totals.append(terms["total"].item())
    assert all(math.isfinite(t) for t in totals)
    assert totals[-1] < 0.5 * totals[0]


def reference_losses(out: DetectorOutput, targets: list[torch.Tensor], cfg: LossConfig) -> dict[str, float]:
    """Eq. 7-12 as plain per-anchor loops in float64: assignment by test_targets' slow loop, the refined rule and
    each term written out, sums normalised by the batch's positive counts (each clamped to >= 1)."""
    from test_targets import slow_assign

    sizes = out.level_sizes
    levels = [lvl for lvl, t in enumerate(sizes) for _ in range(t)]
    anchors = out.anchors.tolist()
    sums = dict.fromkeys(("coarse_cls", "refined_cls", "coarse_loc", "refined_loc", "quality"), 0.0)
    n_c = n_r = 0

    def focal(logits: list[float], target: int) -> float:
        z = [math.exp(v) for v in logits]
        p = z[target] / sum(z)
        a = cfg.focal_alpha if target == 0 else 1.0 - cfg.focal_alpha
        return -a * (1.0 - p) ** cfg.focal_gamma * math.log(p)

    def smooth(x: float) -> float:
        if cfg.refined_loc == "l1":
            return abs(x)
        return 0.5 * x * x / cfg.smooth_l1_beta if abs(x) < cfg.smooth_l1_beta else abs(x) - 0.5 * cfg.smooth_l1_beta

    for b, gt in enumerate(targets):
        labels, loc_t = slow_assign(out.anchors, gt, levels, cfg.ranges)
        pred = out.loc[b].double().tolist()
        ious = []
        for k in range(len(anchors)):
            if labels[k] > 0:
                (ps, pe), (ts, te) = pred[k], loc_t[k].tolist()
                inter = min(ps, ts) + min(pe, te)
                ious.append(inter / (ps + pe + ts + te - inter))
            else:
                ious.append(0.0)
        thresh = cfg.refined_iou
        if cfg.refined_iou_mode == "min_max" and any(labels > 0):
            thresh = min(thresh, max(i for i, lab in zip(ious, labels.tolist()) if lab > 0))
        for k, a in enumerate(anchors):
            lab = int(labels[k])
            refined = lab > 0 and ious[k] >= thresh
            sums["coarse_cls"] += focal(out.conf[b, k].double().tolist(), lab)
            sums["refined_cls"] += focal(out.prop_conf[b, k].double().tolist(), lab if refined else 0)
            (ps, pe), (ts, te) = pred[k], loc_t[k].tolist()
            if lab > 0:
                n_c += 1
                sums["coarse_loc"] += 1.0 - ious[k]  # GIoU = IoU when both segments contain the anchor
            if refined:
                n_r += 1
                half = 0.5 * (ps + pe)
                delta = out.prop_loc[b, k].double().tolist()
                sums["refined_loc"] += smooth(delta[0] - (ts - ps) / half) + smooth(delta[1] - (te - pe) / half)
            if refined if cfg.quality_on == "refined" else lab > 0:
                # the refined box against the ground truth, in boundary form (eq. 13 with the paper's sign)
                w = ps + pe
                delta = out.prop_loc[b, k].double().tolist()
                box = (a - ps - 0.5 * w * delta[0], a + pe + 0.5 * w * delta[1])
                inter = max(0.0, min(box[1], a + te) - max(box[0], a - ts))
                union = (box[1] - box[0]) + (ts + te) - inter
                q = min(max(inter / union, 0.0), 1.0) if union > 0 else 0.0
                x = float(out.quality[b, k])
                sums["quality"] += max(x, 0) - x * q + math.log1p(math.exp(-abs(x)))
    n_c, n_r = max(n_c, 1), max(n_r, 1)
    terms = {
        "coarse_cls": sums["coarse_cls"] / n_c,
        "refined_cls": sums["refined_cls"] / n_r,
        "coarse_loc": sums["coarse_loc"] / n_c,
        "refined_loc": sums["refined_loc"] / n_r,
        "quality": sums["quality"] / (n_r if cfg.quality_on == "refined" else n_c),
    }
    terms["total"] = (
        terms["coarse_cls"]
        + terms["refined_cls"]
        + cfg.alpha * (terms["coarse_loc"] + terms["refined_loc"])
        + cfg.beta * terms["quality"]
    )
    return terms


@pytest.mark.parametrize(
    "cfg",
    [
        LossConfig(),
        LossConfig(
            alpha=3.0,
            beta=0.7,
            focal_gamma=1.5,
            focal_alpha=0.4,
            refined_iou=0.45,
            smooth_l1_beta=0.3,
            quality_on="coarse",
            refined_iou_mode="min_max",
            ranges=[[0, 12], [6, 24], [12, 64]],
        ),
        LossConfig(refined_loc="l1", refined_iou=0.999, refined_iou_mode="min_max", ranges=[[0, 64], [0, 64], [0, 64]]),
    ],
    ids=["defaults", "every-option", "l1-min-max"],
)
def test_compute_losses_equals_a_per_anchor_reference(cfg: LossConfig) -> None:
    """A batch of two clips with several ground truths each (N_c and N_r above 1), every loss option changed."""
    gen = torch.Generator().manual_seed(4)
    sizes, clip = (16, 8, 4), 64
    k = sum(sizes)
    anchors = anchors_for(clip, sizes)
    targets = [
        torch.tensor([[4.0, 20.0, 1.0], [30.0, 37.0, 3.0], [40.0, 62.0, 2.0]]),
        torch.tensor([[0.0, 9.0, 2.0], [10.0, 50.0, 1.0]]),
    ]
    # coarse predictions near the targets (some good, some poor), so that refined positives are a strict subset
    loc = torch.rand(2, k, 2, generator=gen) * 12 + 0.5
    for b, gt in enumerate(targets):
        for s, e, _ in gt.tolist():
            inside = (anchors > s) & (anchors < e)
            jitter = 1 + 0.6 * (torch.rand(int(inside.sum()), 2, generator=gen) - 0.5)
            loc[b, inside] = torch.stack([anchors[inside] - s, e - anchors[inside]], 1) * jitter
    out = output_from(
        loc,
        torch.randn(2, k, 4, generator=gen),
        torch.randn(2, k, 2, generator=gen) * 0.3,
        torch.randn(2, k, 4, generator=gen),
        torch.randn(2, k, generator=gen),
        clip,
        sizes,
    )
    got = compute_losses(out, targets, cfg)
    want = reference_losses(out, targets, cfg)
    for key in LOSS_KEYS:
        assert got[key].item() == pytest.approx(want[key], rel=1e-5, abs=1e-6), key


def test_compute_losses_names_the_clip_of_a_bad_target() -> None:
    out, targets = hand_case()
    out = DetectorOutput(
        **{
            **out.__dict__,
            **{k: torch.cat([getattr(out, k)] * 2) for k in ("loc", "conf", "prop_loc", "prop_conf", "quality")},
        }
    )
    bad = torch.tensor([[0.0, 4.0, float(out.conf.shape[-1])]])  # class index C + 1: not an action class
    with pytest.raises(ValueError, match=r"^targets\[1\], row 0: class_index 2\.0 is not an action class 1\.\.1 "):
        compute_losses(out, [targets[0], bad], LossConfig())
