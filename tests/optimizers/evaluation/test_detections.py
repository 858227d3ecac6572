"""det-agreement: the candidate's detections scored by pycocotools' COCOeval against the reference model's,
on hand-made heads of both layouts: 1.0 for an identical model, the evaluator's own numbers otherwise, and
YOLOX's raw grid offsets decoded as YOLOX decodes them."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest

from optimizers.errors import DataMismatch
from optimizers.evaluation.detections import DecodeOptions, _grid_side, _yolox_grid, agreement, decode
from optimizers.evaluation.metrics import resolve_metric

pytest.importorskip("pycocotools")

CLASSES = 3
N = 2100   # a 320x320 input: 40*40 + 20*20 + 10*10 anchors


def _yolov8(boxes: list[tuple[float, float, float, float, int, float]]) -> np.ndarray:
    """One sample's [4+C, N] head with these (cx, cy, w, h, class, score) boxes and noise below 0.001."""
    out = np.zeros((4 + CLASSES, N), np.float32)
    out[:4] = 10.0
    out[4:] = 0.0005
    for i, (cx, cy, w, h, c, s) in enumerate(boxes):
        out[:4, i] = (cx, cy, w, h)
        out[4 + c, i] = s
    return out


BOXES = [(50, 60, 40, 30, 0, 0.9), (150, 160, 60, 80, 1, 0.8), (250, 100, 30, 30, 2, 0.7), (100, 250, 50, 20, 0, 0.6)]


def test_an_identical_model_agrees_fully():
    ref = np.stack([_yolov8(BOXES), _yolov8(BOXES[:2])])
    assert agreement(ref, ref.copy(), DecodeOptions()) == (1.0, 1.0)
    assert resolve_metric("det-agreement")({"y": ref}, {"y": ref.copy()}) == 1.0


def test_the_numbers_are_the_evaluators_own():
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    moved = [(cx + 6, cy, w, h, c, s) for cx, cy, w, h, c, s in BOXES[:3]] + [(200, 200, 20, 20, 1, 0.95)]
    ref, cand = _yolov8(BOXES)[None], _yolov8(moved)[None]
    at_50, at_50_95 = agreement(ref, cand, DecodeOptions())
    # the same boxes given to COCOeval by hand (xywh from the corners)
    gt = COCO()
    gt.dataset = {"images": [{"id": 0}], "categories": [{"id": c} for c in range(CLASSES)], "annotations": [
        {"id": i + 1, "image_id": 0, "category_id": c, "iscrowd": 0, "bbox": [cx - w / 2, cy - h / 2, w, h],
         "area": w * h} for i, (cx, cy, w, h, c, _) in enumerate(BOXES)]}
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
        dets = gt.loadRes([{"image_id": 0, "category_id": c, "score": s, "bbox": [cx - w / 2, cy - h / 2, w, h]}
                           for cx, cy, w, h, c, s in moved])
        ev = COCOeval(gt, dets, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    assert (at_50, at_50_95) == pytest.approx((ev.stats[1], ev.stats[0]), abs=1e-6)
    assert 0 < at_50_95 < at_50 < 1


def test_yolox_raw_grid_offsets_are_decoded_with_strides_8_16_32():
    assert _grid_side(N) == 320 and _grid_side(N + 1) is None
    cells, strides = _yolox_grid(320)
    raw = np.zeros((N, 5 + CLASSES), np.float32)
    raw[:, 4] = 0.0001
    k = 1600 + 7   # the 8th anchor of the stride-16 grid: cell (7, 0)
    raw[k, :5] = (0.5, 0.25, np.log(2.0), np.log(3.0), 0.9)
    raw[k, 5 + 2] = 1.0
    cxcywh, score, cls = decode(raw)
    assert cells[k].tolist() == [7, 0] and strides[k, 0] == 16
    assert cxcywh[k].tolist() == pytest.approx([(7 + 0.5) * 16, 0.25 * 16, 2 * 16, 3 * 16])
    assert score[k] == pytest.approx(0.9) and cls[k] == 2


def test_a_head_of_another_shape_is_one_sentence():
    with pytest.raises(DataMismatch, match="give your own metric as module:function"):
        agreement(np.zeros((1, 4, 4, 4)), np.zeros((1, 4, 4, 4)), DecodeOptions())



def test_thresholds_and_a_decoder_are_options(tmp_path, monkeypatch):
    ref = np.stack([_yolov8(BOXES)])
    weak = np.stack([_yolov8([*BOXES[:3], (200, 30, 50, 20, 0, 0.6)])])   # the fourth box (score 0.6) misplaced
    assert resolve_metric("det-agreement")({"y": ref}, {"y": weak}) < 1.0
    # as truth only boxes >= 0.7: the fourth box (0.6) is not asked for, and the misplaced one ranks last
    assert resolve_metric("det-agreement@score=0.7")({"y": ref}, {"y": weak}) == pytest.approx(1.0)
    strict = resolve_metric("det-agreement@0.5:0.95,score=0.7,nms=0.5,min-score=0.01")
    assert strict.name == "det-agreement@0.5:0.95" and strict.options.nms_iou == 0.5
    (tmp_path / "heads.py").write_text(
        "import numpy as np\n"
        "def rows(sample):\n"
        "    # a head of rows (cx, cy, w, h, score, class)\n"
        "    return sample[:, :4], sample[:, 4], sample[:, 5].astype(int)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    rows = np.array([[[50, 60, 40, 30, 0.9, 0], [150, 160, 60, 80, 0.8, 1]]], np.float32)
    assert resolve_metric("det-agreement@decoder=heads:rows")({"y": rows}, {"y": rows.copy()}) == pytest.approx(1.0)
    with pytest.raises(Exception, match="score=2"):
        resolve_metric("det-agreement@score=2")
    with pytest.raises(Exception, match="not one of"):
        resolve_metric("det-agreement@iou=0.5")
