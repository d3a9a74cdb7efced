"""From raw network outputs to detections: eq. 13 decoding, clip merging, Soft-NMS, fusion, video classifier.

See docs/DESIGN.md, "Losses, decoding and Soft-NMS".
"""

from .classifier import VideoScores, apply_video_classifier, load_video_scores
from .decode import Candidates, clip_scores, clip_segments, decode_clip, decode_streams
from .merge import detections_for_video, kept_detections
from .softnms import soft_nms, soft_nms_classes, soft_nms_scores, top_k_per_label

__all__ = [
    "Candidates",
    "VideoScores",
    "apply_video_classifier",
    "clip_scores",
    "clip_segments",
    "decode_clip",
    "decode_streams",
    "detections_for_video",
    "kept_detections",
    "load_video_scores",
    "soft_nms",
    "soft_nms_classes",
    "soft_nms_scores",
    "top_k_per_label",
]
