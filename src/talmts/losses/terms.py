"""The loss terms of eq. 7-12 and ``compute_losses``, which puts them together.

Each term returns a *sum* over its samples; ``compute_losses`` divides by the positive counts (clamped to >= 1),
summed over the batch (AFSD-THUMOS; the trainer normalises per clip for larger batches).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from talmts.config import LossConfig
from talmts.geometry import distance_giou, distances_to_segments, elementwise_tiou, refine_distances
from talmts.outputs import DetectorOutput

from .targets import anchor_levels, assign_coarse, check_targets, refine_targets

LOSS_KEYS = ("coarse_cls", "refined_cls", "coarse_loc", "refined_loc", "quality", "total")


def softmax_focal_loss(
    logits: torch.Tensor, target: torch.Tensor, gamma: float = 2.0, alpha: float = 0.25
) -> torch.Tensor:
    """Summed softmax focal loss -alpha_t (1 - p_t)^gamma log p_t over rows of ``logits [N, C+1]``.

    alpha_t is ``alpha`` for background rows (target 0) and ``1 - alpha`` for action rows, as AFSD. log p_t
    comes from log_softmax (AFSD adds 1e-6 to p_t instead; the difference is below 1e-6 per anchor).
    """
    logp = F.log_softmax(logits.float(), dim=-1)  # [N, C+1]
    logpt = logp.gather(1, target[:, None])[:, 0]  # [N]
    pt = logpt.exp()
    alpha_t = torch.where(target == 0, alpha, 1.0 - alpha)
    return -(alpha_t * (1.0 - pt).pow(gamma) * logpt).sum()


def giou_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Summed 1 - GIoU of anchored segments in distance form ``[N, 2]`` (eq. 10)."""
    return (1.0 - distance_giou(pred.float(), target.float())).sum()


def refined_loc_loss(
    pred: torch.Tensor, target: torch.Tensor, kind: str = "smooth_l1", beta: float = 1.0
) -> torch.Tensor:
    """Summed regression loss on the normalised offsets ``[N, 2]`` (eq. 11), both coordinates."""
    if kind == "smooth_l1":
        return F.smooth_l1_loss(pred.float(), target.float(), reduction="sum", beta=beta)
    if kind == "l1":
        return F.l1_loss(pred.float(), target.float(), reduction="sum")
    raise ValueError(f"loss.refined_loc={kind!r}: choose 'smooth_l1' or 'l1'")


def quality_loss(logit: torch.Tensor, target_iou: torch.Tensor) -> torch.Tensor:
    """Summed BCE-with-logits of the quality logit ``[N]`` against a tIoU target ``[N]`` in [0, 1] (eq. 12)."""
    return F.binary_cross_entropy_with_logits(logit.float(), target_iou.float(), reduction="sum")


def compute_losses(output: DetectorOutput, targets: list[torch.Tensor], cfg: LossConfig) -> dict[str, torch.Tensor]:
    """Eq. 7-12 for a batch: ``targets[b]`` is ``[M_b, 3]`` (start_frame, end_frame, class_index) of clip b.

    Returns the five terms (already normalised) and ``total`` = cls_c + cls_r + alpha (loc_c + loc_r) + beta q.
    """
    b, k, c1 = output.conf.shape
    if len(targets) != b:
        raise ValueError(f"compute_losses: {len(targets)} target tensors for a batch of {b} clips")
    device = output.conf.device
    anchors = output.anchors.to(device=device, dtype=torch.float32)
    levels = anchor_levels(output.level_sizes, device) if cfg.ranges is not None else None
    if cfg.ranges is not None and len(cfg.ranges) != len(output.level_sizes):
        raise ValueError(
            f"loss.ranges has {len(cfg.ranges)} pairs but the network has {len(output.level_sizes)} levels"
        )
    loc = output.loc.float()  # [B, K, 2]

    with torch.no_grad():
        labels, loc_t, prop_labels, prop_t = [], [], [], []
        for i, gt in enumerate(targets):
            gt = gt.to(device=device, dtype=torch.float32)
            check_targets(gt, c1 - 1, clip=i)
            coarse = assign_coarse(anchors, gt, levels, cfg.ranges)
            refined = refine_targets(loc[i].detach(), coarse, cfg.refined_iou, cfg.refined_iou_mode)
            labels.append(coarse.labels)
            loc_t.append(coarse.loc)
            prop_labels.append(refined.labels)
            prop_t.append(refined.offsets)
        labels_t = torch.stack(labels)  # [B, K]
        loc_t_all = torch.stack(loc_t)  # [B, K, 2]
        prop_labels_t = torch.stack(prop_labels)  # [B, K]
        prop_t_all = torch.stack(prop_t)  # [B, K, 2]

    pos = labels_t > 0
    ppos = prop_labels_t > 0
    n_c = pos.sum().clamp(min=1).float()
    n_r = ppos.sum().clamp(min=1).float()

    coarse_cls = softmax_focal_loss(output.conf.reshape(-1, c1), labels_t.reshape(-1), cfg.focal_gamma, cfg.focal_alpha)
    refined_cls = softmax_focal_loss(
        output.prop_conf.reshape(-1, c1), prop_labels_t.reshape(-1), cfg.focal_gamma, cfg.focal_alpha
    )
    coarse_loc = giou_loss(loc[pos], loc_t_all[pos])
    refined_loc = refined_loc_loss(output.prop_loc[ppos], prop_t_all[ppos], cfg.refined_loc, cfg.smooth_l1_beta)

    q_mask = ppos if cfg.quality_on == "refined" else pos
    with torch.no_grad():  # the tIoU target carries no gradient (AFSD lets it flow: a bug we do not copy)
        anchor_q = anchors.expand(b, k)[q_mask]  # [Q]
        box = distances_to_segments(anchor_q, refine_distances(loc[q_mask], output.prop_loc[q_mask].float()))
        gt_box = distances_to_segments(anchor_q, loc_t_all[q_mask])
        q_target = elementwise_tiou(box, gt_box).clamp(0.0, 1.0)  # boundary form: right even if d' < 0
    quality = quality_loss(output.quality[q_mask], q_target)
    n_q = n_r if cfg.quality_on == "refined" else n_c

    terms = {
        "coarse_cls": coarse_cls / n_c,
        "refined_cls": refined_cls / n_r,
        "coarse_loc": coarse_loc / n_c,
        "refined_loc": refined_loc / n_r,
        "quality": quality / n_q,
    }
    terms["total"] = (
        terms["coarse_cls"]
        + terms["refined_cls"]
        + cfg.alpha * (terms["coarse_loc"] + terms["refined_loc"])
        + cfg.beta * terms["quality"]
    )
    return terms
