"""Detections of one video from a `talmts export` folder with onnxruntime and numpy alone (docs/DEPLOY.md).

Input: the video's sampled frames (and flow) as `talmts prepare` stores them, uint8 [N, S, S, C] per stream, and two
numbers of its video_info.csv row: rate = fps * sample_count / count, duration = count / fps.
"""

import json

import numpy as np
import onnxruntime as ort


def detect(model_dir, arrays, rate, duration):
    m = json.load(open(f"{model_dir}/talmts-model.json"))
    T, stride, crop = m["windows"]["clip_frames"], m["windows"]["test_stride"], m["sampling"]["crop"]
    norm, post, nms = m["normalization"], m["postprocess"], m["postprocess"]["soft_nms"]
    n = len(next(iter(arrays.values())))
    starts = [0] if n <= T else sorted(set(range(0, n - T + 1, stride)) | {n - T})  # m["windows"]["rule"]
    outs = []
    for s in m["streams"]:  # one graph per stream; clips [windows, C, T, crop, crop]
        x = arrays[s["modality"]]
        y0, x0 = (x.shape[1] - crop) // 2, (x.shape[2] - crop) // 2
        x = x[:, y0 : y0 + crop, x0 : x0 + crop].astype(np.float32) * np.float32(norm["scale"])
        x += np.float32(norm["shift"])
        clips = np.full((len(starts), T, crop, crop, x.shape[-1]), norm["pad_value"], np.float32)
        for i, o in enumerate(starts):
            clips[i, : len(x[o : o + T])] = x[o : o + T]
        session = ort.InferenceSession(f"{model_dir}/{s['file']}", providers=["CPUExecutionProvider"])
        names = [t["name"] for t in m["outputs"]["tensors"]]  # loc, conf, prop_loc, prop_conf, quality
        outs.append(session.run(names, {m["input"]["name"]: clips.transpose(0, 4, 1, 2, 3)}))
    assert len(outs) == 1 or post["fusion"] == "logits"  # two streams: their raw outputs averaged
    loc, conf, prop_loc, prop_conf, quality = (np.mean([o[k] for o in outs], axis=0) for k in range(5))
    e_conf, e_prop = np.exp(conf - conf.max(-1, keepdims=True)), np.exp(prop_conf - prop_conf.max(-1, keepdims=True))
    p = 0.5 * (e_conf / e_conf.sum(-1, keepdims=True) + e_prop / e_prop.sum(-1, keepdims=True))
    score = (p * (1 / (1 + np.exp(-quality)))[..., None])[..., 1:]  # eq. 13, classes 1..C
    loc = loc.astype(np.float64)
    d = loc + 0.5 * loc.sum(-1, keepdims=True) * prop_loc.astype(np.float64)
    anchors = np.array(m["outputs"]["anchors"])
    cands = []  # (start s, end s, class, score)
    for i, o in enumerate(starts):
        seg = np.clip(np.stack([anchors - d[i, :, 0], anchors + d[i, :, 1]], -1), 0, min(T, n - o))
        for k, c in zip(*np.nonzero((score[i] > post["conf_thresh"]) & (seg[:, 1:] > seg[:, :1])), strict=True):
            cands.append(((seg[k, 0] + o) / rate, (seg[k, 1] + o) / rate, c + 1, float(score[i, k, c])))
    kept = []
    for c in sorted({c for _, _, c, _ in cands}):  # Gaussian Soft-NMS per class
        left = [[s, e, sc, j] for j, (s, e, cl, sc) in enumerate(cands) if cl == c and sc >= nms["score_thresh"]]
        while left:
            best = min(left, key=lambda r: (-r[2], r[0], r[3]))
            left.remove(best)
            kept.append((best[2], best[0], best[3], best[1], c))
            for r in left:
                inter = max(min(r[1], best[1]) - max(r[0], best[0]), 0.0)
                iou = inter / ((r[1] - r[0]) + (best[1] - best[0]) - inter)
                if iou > (nms["iou_gate"] or 0.0):
                    r[2] *= np.exp(-(iou**2) / nms["sigma"])
            left = [r for r in left if r[2] >= nms["score_thresh"]]
    kept.sort(key=lambda r: (-r[0], r[1], r[2]))  # best first; top_k per class, then max_per_video
    top, count = [], {}
    for r in kept:
        count[r[4]] = count.get(r[4], 0) + 1
        if count[r[4]] <= nms["top_k"]:
            top.append(r)
    top = top[: post["max_per_video"]]
    rows = [(m["classes"][c - 1], min(max(s, 0), duration), min(max(e, 0), duration), sc) for sc, s, _, e, c in top]
    return [{"label": lab, "score": sc, "segment": [s, e]} for lab, s, e, sc in rows if e > s]
