"""Training targets and the loss of eq. 7-12 (see docs/DESIGN.md, "Losses, decoding and Soft-NMS")."""

from .targets import (
    CoarseTargets,
    RefinedTargets,
    anchor_levels,
    assign_coarse,
    check_targets,
    refine_targets,
)
from .terms import (
    LOSS_KEYS,
    compute_losses,
    giou_loss,
    quality_loss,
    refined_loc_loss,
    softmax_focal_loss,
)

__all__ = [
    "LOSS_KEYS",
    "CoarseTargets",
    "RefinedTargets",
    "anchor_levels",
    "assign_coarse",
    "check_targets",
    "compute_losses",
    "giou_loss",
    "quality_loss",
    "refine_targets",
    "refined_loc_loss",
    "softmax_focal_loss",
]
