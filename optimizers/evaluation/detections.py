"""Detections from a detector's raw output, and how well a candidate's agree with a reference's: COCO mAP
computed by pycocotools (a maintained evaluator, not hand-written AP) with the reference model's detections
as the ground truth, so no labels are needed.

Heads, recognised by shape (one sample, batch first):
    YOLOv8-style  [B, 4+C, N]: cx, cy, w, h already decoded, then C class scores (N anchors > 4+C)
    YOLOX-style   [B, N, 5+C]: cx, cy, w, h, objectness, C class scores; when N is the anchor count of a
                  square input (strides 8/16/32) and the w/h column looks like logs (raw grid offsets,
                  `decode_in_inference=False` exports), decoded as YOLOX's own post-processing does
A `module:function` metric of your own covers any other head."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from optimizers.errors import DataMismatch

STRIDES = (8, 16, 32)


@dataclass(frozen=True)
class Boxes:
    """One image's detections: xyxy [K, 4], score [K], class [K]."""

    xyxy: np.ndarray
    score: np.ndarray
    cls: np.ndarray


@dataclass(frozen=True)
class DecodeOptions:
    """Score and NMS thresholds: the reference's boxes above `truth_score` are the ground truth; the
    candidate's above `min_score` are ranked by score (COCO's AP needs the low-scoring ones too)."""

    truth_score: float = 0.25
    min_score: float = 0.001
    nms_iou: float = 0.45
    max_per_image: int = 100
    decoder: Callable | None = None   # one sample's output -> (cxcywh, score, class); None: YOLOv8/YOLOX


def _grid_side(n: int) -> int | None:
    """The square input side S whose strides 8/16/32 give n anchors, if any."""
    for side in range(32, 4097, 32):
        total = sum((side // s) ** 2 for s in STRIDES)
        if total == n:
            return side
        if total > n:
            return None
    return None


def _yolox_grid(side: int) -> tuple[np.ndarray, np.ndarray]:
    """(cell x/y [N, 2], stride [N, 1]) in YOLOX's anchor order: stride 8 first, row-major."""
    cells, strides = [], []
    for s in STRIDES:
        g = side // s
        ys, xs = np.meshgrid(np.arange(g), np.arange(g), indexing="ij")
        cells.append(np.stack([xs.ravel(), ys.ravel()], 1))
        strides.append(np.full((g * g, 1), s))
    return np.concatenate(cells).astype(np.float32), np.concatenate(strides).astype(np.float32)


def decode(sample: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(cxcywh [N, 4], score [N], class [N]) of one sample's head output ([4+C, N] or [N, 5+C])."""
    if sample.ndim != 2:
        raise DataMismatch(f"a detector output per sample must be 2-D ([4+C, N] or [N, 5+C]), got {sample.shape}; "
                           "give your own metric as module:function for this head")
    rows, cols = sample.shape
    if cols > rows and rows > 4:   # YOLOv8: [4+C, N]
        pred = sample.T
        scores = pred[:, 4:]
        return pred[:, :4], scores.max(1), scores.argmax(1)
    if cols > 5:                   # YOLOX: [N, 5+C]
        pred = sample.astype(np.float32).copy()
        side = _grid_side(rows)
        if side is not None and float(np.abs(pred[:, 2:4]).max()) < 20:   # raw: xy offsets, log wh
            cells, strides = _yolox_grid(side)
            pred[:, :2] = (pred[:, :2] + cells) * strides
            pred[:, 2:4] = np.exp(pred[:, 2:4]) * strides
        scores = pred[:, 5:] * pred[:, 4:5]
        return pred[:, :4], scores.max(1), scores.argmax(1)
    raise DataMismatch(f"a detector output of shape {sample.shape} is neither YOLOv8's [4+C, N] nor YOLOX's "
                       "[N, 5+C]; give your own metric as module:function for this head")


def _iou(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    x1 = np.maximum(box[0], others[:, 0])
    y1 = np.maximum(box[1], others[:, 1])
    x2 = np.minimum(box[2], others[:, 2])
    y2 = np.minimum(box[3], others[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-9)


def detections(sample: np.ndarray, min_score: float, opts: DecodeOptions) -> Boxes:
    """Decoded boxes above `min_score`, per-class greedy NMS, at most opts.max_per_image, best first."""
    cxcywh, score, cls = (opts.decoder or decode)(np.asarray(sample))
    cxcywh, score, cls = np.asarray(cxcywh, np.float32), np.asarray(score, np.float32), np.asarray(cls)
    keep = score >= min_score
    cxcywh, score, cls = cxcywh[keep], score[keep], cls[keep]
    xyxy = np.concatenate([cxcywh[:, :2] - cxcywh[:, 2:] / 2, cxcywh[:, :2] + cxcywh[:, 2:] / 2], 1)
    order = np.argsort(-score, kind="stable")
    chosen: list[int] = []
    alive = np.ones(len(order), bool)
    for i, idx in enumerate(order):
        if not alive[i]:
            continue
        chosen.append(idx)
        if len(chosen) == opts.max_per_image:
            break
        rest = order[i + 1:]
        same = cls[rest] == cls[idx]
        overlap = _iou(xyxy[idx], xyxy[rest]) > opts.nms_iou
        alive[i + 1:] &= ~(same & overlap)
    sel = np.asarray(chosen, dtype=int)
    return Boxes(xyxy[sel], score[sel], cls[sel])


def coco_map(truth: list[Boxes], found: list[Boxes]) -> tuple[float, float]:
    """(mAP@0.5, mAP@0.5:0.95) of `found` against `truth`, image by image, by pycocotools' COCOeval. With no
    ground-truth box at all: 1.0 when nothing was found either, else 0.0."""
    try:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ImportError:
        raise DataMismatch("the det-agreement metric needs pycocotools (the COCO evaluator): "
                           "pip install 'edgefarm[farm]'") from None
    if not any(len(t.score) for t in truth):
        return (1.0, 1.0) if not any(len(f.score) for f in found) else (0.0, 0.0)
    classes = sorted({int(c) for b in [*truth, *found] for c in b.cls})
    images, annotations, results = [], [], []
    for i, (t, f) in enumerate(zip(truth, found)):
        images.append({"id": i})
        for box, c in zip(t.xyxy, t.cls):
            w, h = float(box[2] - box[0]), float(box[3] - box[1])
            annotations.append({"id": len(annotations) + 1, "image_id": i, "category_id": int(c), "iscrowd": 0,
                                "bbox": [float(box[0]), float(box[1]), w, h], "area": w * h})
        for box, s, c in zip(f.xyxy, f.score, f.cls):
            results.append({"image_id": i, "category_id": int(c), "score": float(s),
                            "bbox": [float(box[0]), float(box[1]), float(box[2] - box[0]), float(box[3] - box[1])]})
    with contextlib.redirect_stdout(io.StringIO()):   # COCOeval prints its tables
        gt = COCO()
        gt.dataset = {"images": images, "annotations": annotations, "categories": [{"id": c} for c in classes]}
        gt.createIndex()
        if not results:
            return 0.0, 0.0
        ev = COCOeval(gt, gt.loadRes(results), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return max(float(ev.stats[1]), 0.0), max(float(ev.stats[0]), 0.0)


def agreement(reference: np.ndarray, candidate: np.ndarray, opts: DecodeOptions) -> tuple[float, float]:
    """(mAP@0.5, mAP@0.5:0.95) of the candidate's detections, the reference's (score >= truth_score) taken as
    ground truth; both arrays hold the same samples along axis 0."""
    if reference.shape != candidate.shape:
        raise DataMismatch(f"det-agreement got a reference output of shape {reference.shape} and a candidate "
                           f"output of shape {candidate.shape}; compare outputs of the same samples")
    truth = [detections(r, opts.truth_score, opts) for r in reference]
    found = [detections(c, opts.min_score, opts) for c in candidate]
    return coco_map(truth, found)
