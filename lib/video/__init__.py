"""Pose on video: person detection, tracking, smoothing, frame reading and a synthetic test clip.

detector.py        OnnxPersonDetector: an end-to-end ONNX detector file (mmdeploy's end2end.onnx) -> person boxes
tracking.py        PoseTracker: ids across frames (OKS / IoU matching), boxes followed from keypoints
smoothing.py       OneEuroFilter (Casiez et al. 2012) for keypoints
pipeline.py        VideoPoseRunner: detector every K frames, tracking in between, stage timings; RunningRate
capture.py         FrameReader: frames of a cv2.VideoCapture, skipping (and counting) undecodable ones
drawing.py         draw_people (boxes, ids, skeletons), draw_fps
synthetic_clip.py  render_clip / write_clip: people walking across a background, with per-frame ground truth

demo/demo.py (--video, --camera) and tools/benchmark.py video run frames through these; nothing here
imports from tools/ or demo/.
"""
from .capture import FrameReader
from .detector import DetectorFileError, OnnxPersonDetector
from .pipeline import RunningRate, VideoPoseRunner
from .smoothing import OneEuroFilter
from .synthetic_clip import ClipConfig, render_clip, write_clip
from .tracking import PoseTracker

__all__ = ['FrameReader', 'DetectorFileError', 'OnnxPersonDetector', 'RunningRate', 'VideoPoseRunner',
           'OneEuroFilter', 'ClipConfig', 'render_clip', 'write_clip', 'PoseTracker']
