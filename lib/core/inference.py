"""Top-down pose inference: normalised crops in, keypoints in image pixels out.

    keypoints = predict_keypoints(model, crops, centers, scales, codec, flip_pairs)   # (N, K, 3)
    estimator = PoseEstimator(cfg, 'model_best.pth')         # ours or an official mmpose checkpoint
    people = estimator.predict(image_bgr, boxes_xywh)          # [{'keypoints': (K, 3), 'box', 'score'}]
    heatmaps = estimator.forward(crops)                        # (N, 3, H, W) -> (N, K, H/4, W/4), numpy

`predict_keypoints` is the one inference path: `PoseEstimator.predict` (demo, whole images) and
`lib.core.function.run_inference` (validation, tools/test.py) both call it on each batch of crops. It
runs the flip test (`flip_test_heatmaps`: plain and mirrored crops as one batch, mirrored output
flipped back with `lib.codecs.flip_back`), decodes with the codec (heatmap pixels) and maps the peaks
back to the image with `lib.dataset.transforms.heatmap_to_image_coords`. PoseEstimator adds what
comes before: boxes -> centre/scale and crops with `lib.dataset.transforms` (the dataset's code).
With TEST.COMPILE (or compile=True) its network is compiled block by block (`lib.core.compile`);
with TEST.BACKEND onnxruntime / openvino (or backend=...) it is a deployed file run by that runtime
(`lib.export.backends.load_network`), called like the PyTorch network.
"""
from __future__ import annotations

import logging
import os
from typing import Sequence

import numpy as np
import torch
from torch import nn

from lib.codecs import MSRAHeatmap, build_codec, flip_back
from lib.dataset.metainfo import check_num_joints, get_metainfo
from lib.dataset.transforms import box_to_center_scale, heatmap_to_image_coords, person_crop

__all__ = ['PoseEstimator', 'predict_keypoints', 'flip_test_heatmaps']

logger = logging.getLogger(__name__)


@torch.no_grad()
def flip_test_heatmaps(model: nn.Module, images: torch.Tensor, flip_pairs: Sequence[Sequence[int]],
                       flip_test: bool = True, shift: bool = True) -> torch.Tensor:
    """Heatmaps (B, K, h, w) of normalised crops (B, 3, H, W), averaged with the mirrored flip pass.

    The plain and the flipped crops go through the network as one batch of 2B (one call, fewer
    framework overheads on CPU; in eval mode the same as two calls up to float rounding, as kernels
    depend on the batch size); the flipped half is mirrored back (left/right maps swapped, width
    reversed, optionally shifted one pixel right as in the official test) and averaged.
    """
    if not flip_test:
        return model(images)
    out = model(torch.cat([images, torch.flip(images, dims=[3])]))
    plain, flipped = out[:images.shape[0]], out[images.shape[0]:]
    return (plain + flip_back(flipped, flip_pairs, shift=shift)) * 0.5


@torch.no_grad()
def predict_keypoints(model: nn.Module, crops: torch.Tensor, centers: np.ndarray, scales: np.ndarray,
                      codec: MSRAHeatmap, flip_pairs: Sequence[Sequence[int]], flip_test: bool = True,
                      shift: bool = True) -> np.ndarray:
    """Keypoints (B, K, 3) float64 -- image x, y and heatmap score -- of B normalised crops.

    crops: (B, 3, H, W) on the model's device (any memory format); centers, scales: (B, 2) of the
    boxes the crops were cut from (scale in 200-px units). The model must be in eval mode.
    """
    heatmaps = flip_test_heatmaps(model, crops, flip_pairs, flip_test=flip_test, shift=shift)
    coords, scores = codec.decode(heatmaps.float().cpu().numpy())
    coords = heatmap_to_image_coords(coords, centers, scales, codec.heatmap_size)
    return np.concatenate([coords, scores[..., None]], axis=-1)


def build_pose_model(cfg, weights: 'None | str | os.PathLike | nn.Module' = None) -> tuple[nn.Module, str]:
    """(model, description of its weights): a given module, a checkpoint file, or TEST.MODEL_FILE.

    weights=None reads cfg.TEST.MODEL_FILE; when that is empty too the model keeps its random
    initialisation and a warning says so (its keypoints are meaningless).
    """
    if isinstance(weights, nn.Module):
        return weights, f'the given {type(weights).__name__} module'
    path = os.fspath(weights) if weights is not None else cfg.TEST.MODEL_FILE
    if path:
        from lib.export.backends import load_network  # the checkpoint loader of every tool
        return load_network(cfg, path, 'torch'), path
    from lib.models import build_model  # imported here: the model table is only needed for this path
    logger.warning('no weights given (TEST.MODEL_FILE is empty): %s has RANDOM weights, '
                   'its keypoints are meaningless', cfg.MODEL.NAME)
    return build_model(cfg), 'random initialisation (no weights file)'


class PoseEstimator:
    """A top-down pose network with its pre- and post-processing, configured by a cfg.

    Args:
        cfg: config from `lib.config.load_config` (MODEL.*, DATASET.METAINFO/COLOR_RGB, TEST.*).
        weights: None (cfg.TEST.MODEL_FILE, or random weights with a warning when that is empty),
            a checkpoint path (ours or official mmpose), or an `nn.Module` used as it is.
        device: where the network runs.
        fold_bn: run `model.fold_bn()` (BatchNorm folded into the convolutions, same outputs, faster).
        compile: compile the network's blocks with `lib.core.compile.compile_model` (same outputs up
            to float rounding; the first calls of each batch size compile); None: cfg.TEST.COMPILE.
        backend: 'torch', 'onnxruntime' or 'openvino' (None: cfg.TEST.BACKEND); the runtimes take a .onnx /
            .xml file from demo/convert2onnx.py or a checkpoint they export on the fly, and run on the CPU
            (lib/export/backends.py). fold_bn and compile apply to 'torch' only.
        precision: 'fp32', 'bf16' (OpenVINO) or 'int8' (a quantised file); None: cfg.TEST.PRECISION.
        threads: the runtimes' intra-op threads (default: torch's thread count).
    """

    def __init__(self, cfg, weights: 'None | str | os.PathLike | nn.Module' = None,
                 device: str | torch.device = 'cpu', fold_bn: bool = False, compile: bool | None = None,
                 backend: str | None = None, precision: str | None = None, threads: int | None = None) -> None:
        self.cfg = cfg
        self.metainfo = get_metainfo(cfg.DATASET.METAINFO)
        check_num_joints(self.metainfo, cfg.MODEL.NUM_JOINTS)
        self.codec = build_codec(cfg)
        self.image_size = (int(cfg.MODEL.IMAGE_SIZE[0]), int(cfg.MODEL.IMAGE_SIZE[1]))  # (W, H)
        self.aspect_ratio = self.image_size[0] / self.image_size[1]
        self.flip_test = bool(cfg.TEST.FLIP_TEST)
        self.shift_heatmap = bool(cfg.TEST.SHIFT_HEATMAP)
        self.color_rgb = bool(cfg.DATASET.COLOR_RGB)
        self.batch_size = max(1, int(cfg.TEST.BATCH_SIZE_PER_GPU))
        self.backend = backend or cfg.TEST.BACKEND
        self.precision = precision or cfg.TEST.PRECISION
        self.compiled = bool(cfg.TEST.COMPILE if compile is None else compile)
        from lib.export.backends import check_backend, check_model_file, load_network  # runtimes load lazily
        check_backend(self.backend, self.precision)
        if not isinstance(weights, nn.Module) and (weights or cfg.TEST.MODEL_FILE):
            check_model_file(weights or cfg.TEST.MODEL_FILE, self.backend)
        if self.backend != 'torch':
            if self.compiled or isinstance(weights, nn.Module):
                raise ValueError(f'backend {self.backend} runs a model file: '
                                 + ('compile applies to the torch backend only' if self.compiled
                                    else 'pass a path, not an nn.Module'))
            self.device = torch.device('cpu')
            self.weights_source = os.fspath(weights) if weights is not None else cfg.TEST.MODEL_FILE
            self.random_weights = False
            self.model = load_network(cfg, self.weights_source, self.backend, self.precision, threads).eval()
            return
        self.device = torch.device(device)
        model, self.weights_source = build_pose_model(cfg, weights)
        self.random_weights = self.weights_source.startswith('random')
        model = model.to(self.device).eval()
        if fold_bn and not callable(getattr(model, 'fold_bn', None)):
            raise ValueError(f'fold_bn=True needs a model with a fold_bn() method; {type(model).__name__} has none')
        model = model.fold_bn() if fold_bn else model
        if self.compiled:
            from lib.core.compile import compile_model
            # In place; eager after one warning where it cannot compile (no C++ compiler).
            model = compile_model(model, mode=cfg.TEST.COMPILE_MODE)
        self.model = model

    @property
    def num_joints(self) -> int:
        return self.metainfo.num_joints

    def preprocess(self, image_bgr: np.ndarray,
                   boxes_xywh: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Crops (M, 3, H, W) float32 normalised, centres (M, 2) and scales (M, 2) of M boxes."""
        image_bgr = _check_image(image_bgr)
        boxes = _check_boxes(boxes_xywh)
        w, h = self.image_size
        crops = np.empty((len(boxes), 3, h, w), dtype=np.float32)
        centers = np.empty((len(boxes), 2), dtype=np.float32)
        scales = np.empty((len(boxes), 2), dtype=np.float32)
        for i, box in enumerate(boxes):
            centers[i], scales[i] = box_to_center_scale(box, self.aspect_ratio)
            crops[i] = person_crop(image_bgr, centers[i], scales[i], self.image_size, self.color_rgb)
        return crops, centers, scales

    @torch.no_grad()
    def forward(self, crops: np.ndarray) -> np.ndarray:
        """Heatmaps (N, K, H/4, W/4) float32 of normalised crops (N, 3, H, W) float32 (as `preprocess`
        makes them): the network alone, no flip test or decoding, TEST.BATCH_SIZE_PER_GPU crops per
        call; the same call whether the network is eager, BN-folded or compiled."""
        crops = np.asarray(crops, dtype=np.float32)
        w, h = self.image_size
        if crops.ndim != 4 or crops.shape[1:] != (3, h, w):
            raise ValueError(f'crops must be (N, 3, {h}, {w}) normalised images, got shape {crops.shape}')
        out = []
        for start in range(0, len(crops), self.batch_size):
            batch = torch.from_numpy(crops[start:start + self.batch_size]).to(self.device)
            out.append(self.model(batch).float().cpu().numpy())
        if not out:
            hw, hh = self.codec.heatmap_size
            return np.zeros((0, self.num_joints, hh, hw), dtype=np.float32)
        return np.concatenate(out)

    def predict(self, image_bgr: np.ndarray, boxes_xywh: np.ndarray,
                box_scores: np.ndarray | None = None) -> list[dict]:
        """Keypoints of every person box in one image.

        Args:
            image_bgr: (H, W, 3) image as cv2.imread returns it (uint8 or float, BGR).
            boxes_xywh: (M, 4) person boxes x, y, w, h in image pixels (may extend past the image).
            box_scores: (M,) detection scores (default 1).
        Returns:
            M dicts {'keypoints': (K, 3) x, y in image pixels + heatmap score, 'box': (4,), 'score': float}.
        """
        boxes = _check_boxes(boxes_xywh)
        scores = np.ones(len(boxes)) if box_scores is None else np.asarray(box_scores, dtype=np.float64).reshape(-1)
        if scores.shape != (len(boxes),):
            raise ValueError(f'box_scores must have one value per box ({len(boxes)}), got shape {scores.shape}')
        if len(boxes) == 0:
            return []
        crops, centers, scales = self.preprocess(image_bgr, boxes)
        per_batch = []
        for start in range(0, len(boxes), self.batch_size):  # TEST.BATCH_SIZE_PER_GPU boxes at a time
            part = slice(start, start + self.batch_size)
            batch = torch.from_numpy(crops[part]).to(self.device)
            per_batch.append(predict_keypoints(self.model, batch, centers[part], scales[part], self.codec,
                                               self.metainfo.flip_pairs, self.flip_test, self.shift_heatmap))
        keypoints = np.concatenate(per_batch)
        return [{'keypoints': keypoints[i], 'box': boxes[i].copy(), 'score': float(scores[i])}
                for i in range(len(boxes))]


def _check_image(image: np.ndarray) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or 0 in image.shape:
        shape = getattr(image, 'shape', type(image).__name__)
        raise ValueError(f'expected an (H, W, 3) BGR image array, got {shape}')
    return image


def _check_boxes(boxes_xywh: np.ndarray) -> np.ndarray:
    boxes = np.asarray(boxes_xywh, dtype=np.float64)
    if boxes.size == 0:
        return boxes.reshape(0, 4)
    if boxes.ndim == 1:
        boxes = boxes[None]
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f'boxes must be (M, 4) x, y, w, h, got shape {np.shape(boxes_xywh)}')
    bad = np.nonzero(~np.isfinite(boxes).all(axis=1) | (boxes[:, 2] <= 0) | (boxes[:, 3] <= 0))[0]
    if len(bad):
        raise ValueError(f'box {int(bad[0])} {boxes[bad[0]].tolist()} needs a finite position and positive '
                         f'width and height')
    return boxes
