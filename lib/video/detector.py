"""Person boxes from an end-to-end ONNX detector file, run in onnxruntime (the user's file: nothing is downloaded).

    detector = OnnxPersonDetector('end2end.onnx')           # RTMDet defaults: letterbox, BGR, mmdet mean/std
    boxes_xywh, scores = detector(frame_bgr)                # frame pixels, best first

The file format is what mmdeploy's `tools/deploy.py` writes for mmdet detectors with a
`detection_onnxruntime_static.py` / `_dynamic.py` config (RTMDet, YOLOX, ...: `end2end.onnx`), with
box decoding and per-class NMS inside the graph:
  input    one float32 image 1 x 3 x H x W (H, W are read from the file; a dynamic file is fed `input_size`)
  outputs  `dets` 1 x N x 5 (x1, y1, x2, y2, score, in input pixels) and `labels` 1 x N (class ids)
Preprocessing is not in that graph (mmdeploy does it outside), so it is done here as mmdet's test
pipeline does: resize keeping the aspect ratio with the image at the top left and the rest padded with
114 (`letterbox`), or a plain resize to H x W (`plain`), then (pixel - mean) / std on BGR or RGB channels.
Boxes are mapped back to frame pixels with the exact scale of the resize (resized size / frame size per
axis, as mmdet's `scale_factor`) and clipped to the frame; then boxes of the person class id with a score
>= `score_thr` are kept and overlapping ones removed (greedy IoU NMS, `box_nms`).

`export_fixed_box_detector` writes a tiny file in this format that emits given boxes whatever the image
(tests and tools/benchmark.py video use it in place of a real detector).
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np

from lib.nms.nms import descending_order

__all__ = ['OnnxPersonDetector', 'DetectorFileError', 'ResizeTransform', 'box_nms', 'box_iou',
           'export_fixed_box_detector', 'RTMDET_MEAN', 'RTMDET_STD', 'RESIZE_MODES', 'PAD_VALUE']

logger = logging.getLogger(__name__)

# mmdet's RTMDet data_preprocessor (bgr_to_rgb=False: the means are in BGR order). YOLOX uses mean 0, std 1.
RTMDET_MEAN = (103.53, 116.28, 123.675)
RTMDET_STD = (57.375, 57.12, 58.395)
PAD_VALUE = 114  # mmdet's Pad(pad_val=114) of the RTMDet and YOLOX test pipelines, before normalisation
RESIZE_MODES = ('letterbox', 'plain')
DYNAMIC_INPUT_SIZE = (640, 640)  # (W, H) fed to a file whose H, W are dynamic: RTMDet's and YOLOX's test size
EXPECTED_FORMAT = ("one float32 image input 1 x 3 x H x W and outputs 'dets' (1 x N x 5: x1, y1, x2, y2, score) "
                   "and 'labels' (1 x N), as mmdeploy's end2end.onnx for mmdet detectors")


class DetectorFileError(ValueError):
    """The detector file is missing, not ONNX, or not in the end-to-end format."""


@dataclass(frozen=True)
class ResizeTransform:
    """How a frame is resized into the detector input, and back: input pixel = frame pixel * scale.

    The resized frame sits at the top left of the input; the rest is padding (letterbox) or nothing (plain).
    """

    resized_size: tuple[int, int]  # (w, h) of the resized frame inside the input
    input_size: tuple[int, int]  # (W, H) of the detector input
    scale: tuple[float, float]  # (sx, sy) = resized size / frame size

    @classmethod
    def fit(cls, frame_size: Sequence[int], input_size: Sequence[int], mode: str = 'letterbox') -> 'ResizeTransform':
        """frame_size, input_size: (w, h). letterbox keeps the aspect ratio (mmcv's rounding: int(x + 0.5))."""
        w, h = int(frame_size[0]), int(frame_size[1])
        iw, ih = int(input_size[0]), int(input_size[1])
        if mode == 'letterbox':
            s = min(iw / w, ih / h)
            rw, rh = min(iw, int(w * s + 0.5)), min(ih, int(h * s + 0.5))
        elif mode == 'plain':
            rw, rh = iw, ih
        else:
            raise ValueError(f"resize mode must be one of {RESIZE_MODES}, got '{mode}'")
        return cls((rw, rh), (iw, ih), (rw / w, rh / h))

    def apply(self, frame: np.ndarray) -> np.ndarray:
        """The (H, W, 3) detector input image (uint8 like the frame), padded with PAD_VALUE."""
        resized = cv2.resize(frame, self.resized_size, interpolation=cv2.INTER_LINEAR)
        if self.resized_size == self.input_size:
            return resized
        out = np.full((self.input_size[1], self.input_size[0], 3), PAD_VALUE, dtype=frame.dtype)
        out[:self.resized_size[1], :self.resized_size[0]] = resized
        return out

    def to_frame(self, boxes_xyxy: np.ndarray) -> np.ndarray:
        """(N, 4) x1, y1, x2, y2 in detector-input pixels -> frame pixels (float64)."""
        sx, sy = self.scale
        return np.asarray(boxes_xyxy, dtype=np.float64) / np.array([sx, sy, sx, sy])

    def to_input(self, boxes_xyxy: np.ndarray) -> np.ndarray:
        """(N, 4) x1, y1, x2, y2 in frame pixels -> detector-input pixels (float64)."""
        sx, sy = self.scale
        return np.asarray(boxes_xyxy, dtype=np.float64) * np.array([sx, sy, sx, sy])


def box_iou(a_xyxy: np.ndarray, b_xyxy: np.ndarray) -> np.ndarray:
    """IoU (N, M) between boxes (N, 4) and (M, 4), x1, y1, x2, y2."""
    a = np.asarray(a_xyxy, dtype=np.float64).reshape(-1, 4)[:, None]
    b = np.asarray(b_xyxy, dtype=np.float64).reshape(-1, 4)[None]
    iw = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    ih = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = iw * ih
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    union = area_a + area_b - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def box_nms(boxes_xyxy: np.ndarray, scores: np.ndarray, iou_thr: float) -> np.ndarray:
    """Greedy NMS: by descending score (ties: input order), keep a box and drop later ones with IoU > iou_thr.

    Returns the kept indices, best first. iou_thr >= 1 keeps every box.
    """
    order = descending_order(scores)  # the OKS NMS order of lib.nms
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        order = order[1:][box_iou(boxes_xyxy[i], boxes_xyxy[order[1:]])[0] <= iou_thr]
    return np.asarray(keep, dtype=np.intp)


def _dim(value) -> int | None:
    """A fixed dimension of an onnxruntime shape, or None when it is symbolic/unknown."""
    return value if isinstance(value, int) and value > 0 else None


class OnnxPersonDetector:
    """An end-to-end ONNX detector file (see the module docstring) returning person boxes in frame pixels.

    Args:
        path: the .onnx file.
        resize: 'letterbox' (keep the aspect ratio, pad bottom/right with 114) or 'plain'.
        mean, std: per-channel normalisation in the order of the channels fed (BGR unless rgb).
        rgb: feed RGB (convert from the BGR frame) instead of BGR.
        cat_id: the class id of a person in `labels` (0 for COCO-trained mmdet models).
        score_thr: keep boxes with score >= this.
        nms_thr: drop a box whose IoU with a better kept one exceeds this (>= 1: no NMS).
        input_size: (W, H) fed to a file whose input height/width are dynamic (default 640 x 640); a
            fixed-size file's own size is used, and a different input_size is an error.
        threads: onnxruntime intra-op threads (None: its default).
    """

    def __init__(self, path: str, resize: str = 'letterbox', mean: Sequence[float] = RTMDET_MEAN,
                 std: Sequence[float] = RTMDET_STD, rgb: bool = False, cat_id: int = 0, score_thr: float = 0.5,
                 nms_thr: float = 0.65, input_size: Sequence[int] | None = None, threads: int | None = None) -> None:
        if resize not in RESIZE_MODES:
            raise ValueError(f"detector resize must be one of {RESIZE_MODES}, got '{resize}'")
        self.mean = np.asarray(mean, dtype=np.float32).reshape(3)
        self.std = np.asarray(std, dtype=np.float32).reshape(3)
        if not np.all(self.std > 0):
            raise ValueError(f'detector std must be 3 positive numbers, got {list(std)}')
        self.path, self.resize, self.rgb = path, resize, bool(rgb)
        self.cat_id, self.score_thr, self.nms_thr = int(cat_id), float(score_thr), float(nms_thr)
        self.session = _open_session(path, threads)
        self.input_name, self.input_size = _check_format(self.session, path, input_size)
        self._transforms: dict[tuple[int, int], ResizeTransform] = {}

    def transform_for(self, frame_size: tuple[int, int]) -> ResizeTransform:
        """The resize of a (w, h) frame into this detector's input (cached per frame size)."""
        if frame_size not in self._transforms:
            self._transforms[frame_size] = ResizeTransform.fit(frame_size, self.input_size, self.resize)
        return self._transforms[frame_size]

    def preprocess(self, frame_bgr: np.ndarray) -> tuple[np.ndarray, ResizeTransform]:
        """(1, 3, H, W) float32 network input of a BGR frame, and the resize that made it."""
        transform = self.transform_for((frame_bgr.shape[1], frame_bgr.shape[0]))
        image = transform.apply(frame_bgr)
        if self.rgb:
            image = image[:, :, ::-1]
        blob = (image.astype(np.float32) - self.mean) / self.std
        return np.ascontiguousarray(blob.transpose(2, 0, 1)[None]), transform

    def __call__(self, frame_bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Person boxes (M, 4) x, y, w, h in frame pixels and their scores (M,), best first."""
        blob, transform = self.preprocess(frame_bgr)
        dets, labels = self.session.run(['dets', 'labels'], {self.input_name: blob})
        dets = np.asarray(dets, dtype=np.float64).reshape(-1, 5)
        labels = np.asarray(labels).reshape(-1)
        if len(labels) != len(dets):
            raise DetectorFileError(f'{self.path}: the detector returned {len(dets)} dets but {len(labels)} labels')
        keep = (labels == self.cat_id) & (dets[:, 4] >= self.score_thr) & np.isfinite(dets).all(axis=1)
        boxes, scores = transform.to_frame(dets[keep, :4]), dets[keep, 4]
        h, w = frame_bgr.shape[:2]
        boxes = np.clip(boxes, 0, [w, h, w, h])  # boxes reaching into the padding end at the frame's edge
        nonempty = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        boxes, scores = boxes[nonempty], scores[nonempty]
        order = box_nms(boxes, scores, self.nms_thr)
        boxes, scores = boxes[order], scores[order]
        return np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1), scores


def _open_session(path: str, threads: int | None):
    """lib.export.create_session (the project's one onnxruntime session: CPU, graph optimisation ALL, errors-only
    log) of the detector file, or one DetectorFileError naming the file. threads None: onnxruntime's default."""
    from lib.export.runtime import create_session  # imported here: only the --det-model path needs onnxruntime
    if not os.path.isfile(path):
        raise DetectorFileError(f'detector file {path}: no such file')
    try:
        return create_session(path, threads=threads or 0)  # 0: onnxruntime picks the thread count
    except Exception as err:  # onnxruntime raises its own exception types (InvalidProtobuf, Fail, ...)
        raise DetectorFileError(f'detector file {path}: onnxruntime cannot load it ({type(err).__name__}: '
                                f'{str(err).strip().splitlines()[0] if str(err).strip() else err!r}); '
                                f'expected {EXPECTED_FORMAT}') from None


def _check_format(session, path: str, input_size: Sequence[int] | None) -> tuple[str, tuple[int, int]]:
    """(input name, (W, H)) of a session in the end-to-end format, else one DetectorFileError saying what differs."""
    inputs, outputs = session.get_inputs(), {o.name: o for o in session.get_outputs()}
    found = (f"found inputs {[(i.name, i.shape, i.type) for i in inputs]} and outputs "
             f"{[(o.name, o.shape) for o in outputs.values()]}")
    problem = None
    if len(inputs) != 1 or len(inputs[0].shape) != 4 or inputs[0].type != 'tensor(float)':
        problem = 'the input is not one float32 4-D image'
    elif _dim(inputs[0].shape[0]) not in (None, 1) or _dim(inputs[0].shape[1]) not in (None, 3):
        problem = 'the input is not 1 x 3 x H x W'
    elif 'dets' not in outputs or 'labels' not in outputs:
        problem = "the outputs 'dets' and 'labels' are missing"
    elif len(outputs['dets'].shape) != 3 or _dim(outputs['dets'].shape[2]) not in (None, 5) \
            or len(outputs['labels'].shape) != 2:
        problem = "'dets' is not 1 x N x 5 or 'labels' not 1 x N"
    if problem:
        raise DetectorFileError(f'detector file {path}: not an end-to-end detector file ({problem}); expected '
                                f'{EXPECTED_FORMAT}; {found}')
    h, w = _dim(inputs[0].shape[2]), _dim(inputs[0].shape[3])
    if h is None or w is None:  # a dynamic-shape export: feed the requested (or the default) size
        size = tuple(int(v) for v in (input_size or DYNAMIC_INPUT_SIZE))
        logger.info('detector file %s: dynamic input size, feeding %dx%d (W x H)', path, *size)
        return inputs[0].name, size
    if input_size is not None and tuple(int(v) for v in input_size) != (w, h):
        raise DetectorFileError(f'detector file {path}: the file takes {w}x{h} images (W x H); '
                                f'the requested input size {input_size[0]}x{input_size[1]} differs')
    return inputs[0].name, (w, h)


def export_fixed_box_detector(path: str, boxes_xyxy: np.ndarray, scores: Sequence[float],
                              labels: Sequence[int], input_size: Sequence[int] = (320, 320)) -> str:
    """Write an end-to-end detector file (1 x 3 x H x W -> dets, labels) that emits the given boxes (in
    detector-input pixels) for any image. It reads its input (dets = boxes + 0 * mean(image)), so running it
    costs a pass over the input like a real first layer would. input_size: (W, H). Returns path."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w, h = int(input_size[0]), int(input_size[1])
    dets = np.concatenate([np.asarray(boxes_xyxy, np.float32).reshape(-1, 4),
                           np.asarray(scores, np.float32).reshape(-1, 1)], axis=1)[None]
    n = dets.shape[1]
    init = [numpy_helper.from_array(dets, 'fixed_dets'),
            numpy_helper.from_array(np.asarray(labels, np.int64).reshape(1, n), 'fixed_labels'),
            numpy_helper.from_array(np.zeros((), np.float32), 'zero')]
    nodes = [helper.make_node('ReduceMean', ['input'], ['mean'], keepdims=0),
             helper.make_node('Mul', ['mean', 'zero'], ['nothing']),
             helper.make_node('Add', ['fixed_dets', 'nothing'], ['dets']),
             helper.make_node('Identity', ['fixed_labels'], ['labels'])]
    graph = helper.make_graph(nodes, 'fixed_box_detector',
                              [helper.make_tensor_value_info('input', TensorProto.FLOAT, [1, 3, h, w])],
                              [helper.make_tensor_value_info('dets', TensorProto.FLOAT, [1, n, 5]),
                               helper.make_tensor_value_info('labels', TensorProto.INT64, [1, n])], init)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 13)])
    model.ir_version = 8  # readable by onnxruntime >= 1.10
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path
