"""Train and run ActionFormer (PyPI ``actionformer`` 1.5.0) on snippet features; run by bench/small_data.py inside
ActionFormer's own environment (it imports nothing from talmts).

Uses the package's dataset ("thumos" layout), model, optimiser, scheduler, EMA and training epoch, with its THUMOS14
I3D recipe (AdamW lr 1e-4, weight decay 0.05, batch 2, 5 warm-up epochs then cosine, local attention window 19,
feature crop 0.9-1.0, grad clip 1.0), CPU instead of CUDA. Writes the test detections in the ActivityNet results
layout (seconds) and prints one JSON line of timings.
"""

from __future__ import annotations

import argparse
import json
import time

import torch


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--features", required=True)
    p.add_argument("--annotations", required=True)
    p.add_argument("--classes", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--dim", type=int, default=1024)
    p.add_argument("--max-seq-len", type=int, default=576)  # must be divisible by 32 x (window - 1)
    p.add_argument("--window", type=int, default=19, help="local attention window; -1: global attention")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", required=True)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.cuda.synchronize = lambda *args, **kwargs: None  # the package's epoch loop syncs CUDA to time its logs

    from actionformer.core.config import DEFAULTS, _merge, _update_config
    from actionformer.datasets import make_data_loader, make_dataset
    from actionformer.modeling import make_meta_arch
    from actionformer.utils import ModelEma, fix_random_seed, make_optimizer, make_scheduler, train_one_epoch

    classes = a.classes.split(",")
    cfg = {
        "init_rand_seed": a.seed,
        "dataset_name": "thumos",
        "devices": ["cpu"],
        "train_split": ["train"],
        "val_split": ["test"],
        "model_name": "LocPointTransformer",
        "dataset": {
            "json_file": a.annotations, "feat_folder": a.features, "file_prefix": None, "file_ext": ".npy",
            "num_classes": len(classes), "input_dim": a.dim, "feat_stride": 4, "num_frames": 16, "default_fps": None,
            "trunc_thresh": 0.5, "crop_ratio": [0.9, 1.0], "max_seq_len": a.max_seq_len,
        },
        "model": {"fpn_type": "identity", "max_buffer_len_factor": 6.0, "n_mha_win_size": a.window},
        "opt": {"learning_rate": 1e-4, "epochs": a.epochs, "weight_decay": 0.05},
        "loader": {"batch_size": 2, "num_workers": 1},  # the package's loader wants a worker
        "train_cfg": {"init_loss_norm": 100, "clip_grad_l2norm": 1.0, "cls_prior_prob": 0.01,
                      "center_sample": "radius", "center_sample_radius": 1.5},
        "test_cfg": {"voting_thresh": 0.7, "pre_nms_topk": 2000, "max_seg_num": 200, "min_score": 0.001,
                     "multiclass_nms": True},
    }  # fmt: skip
    import copy

    _merge(copy.deepcopy(DEFAULTS), cfg)
    cfg = _update_config(cfg)
    rng = fix_random_seed(cfg["init_rand_seed"], include_cuda=False)
    train_set = make_dataset(cfg["dataset_name"], True, cfg["train_split"], **cfg["dataset"])
    cfg["model"]["train_cfg"]["head_empty_cls"] = train_set.get_attributes()["empty_label_ids"]
    train_loader = make_data_loader(train_set, True, rng, **cfg["loader"])
    model = make_meta_arch(cfg["model_name"], **cfg["model"])
    optimizer = make_optimizer(model, cfg["opt"])
    scheduler = make_scheduler(optimizer, cfg["opt"], len(train_loader))
    ema = ModelEma(model)
    t0, c0 = time.perf_counter(), time.process_time()
    epochs = cfg["opt"]["epochs"] + cfg["opt"]["warmup_epochs"]
    for epoch in range(epochs):
        train_one_epoch(train_loader, model, optimizer, scheduler, epoch, model_ema=ema,
                        clip_grad_l2norm=cfg["train_cfg"]["clip_grad_l2norm"], print_freq=10**9)  # fmt: skip
    train_s, train_cpu = time.perf_counter() - t0, time.process_time() - c0

    t0 = time.perf_counter()
    test_set = make_dataset(cfg["dataset_name"], False, cfg["val_split"], **cfg["dataset"])
    test_loader = make_data_loader(test_set, False, None, 1, 1)
    net = ema.module
    net.eval()
    results: dict[str, list[dict]] = {}
    with torch.no_grad():
        for video_list in test_loader:
            for out in net(video_list):
                rows = results.setdefault(out["video_id"], [])
                for (s, e), lab, score in zip(out["segments"].tolist(), out["labels"].tolist(), out["scores"].tolist()):
                    rows.append({"segment": [s, e], "label": classes[int(lab)], "score": float(score)})
    eval_s = time.perf_counter() - t0
    with open(a.out, "w") as f:
        json.dump({"version": "actionformer-1.5.0", "results": results, "external_data": {}}, f)
    print(
        json.dumps(
            {
                "train_s": train_s,
                "train_cpu": train_cpu,
                "eval_s": eval_s,
                "epochs": epochs,
                "steps_per_epoch": len(train_loader),
            }
        )
    )


if __name__ == "__main__":
    main()
