"""From raw network outputs to detections: eq. 13 decoding, clip merging, Soft-NMS, fusion, video classifier."""

from .softnms import soft_nms, soft_nms_classes, soft_nms_scores

__all__ = ["soft_nms", "soft_nms_classes", "soft_nms_scores"]
