"""Video pose: the ONNX person detector, tracking, One-Euro smoothing, frame reading and demo/demo.py on
videos and a camera stand-in.

Tracking is tested on the synthetic walking clip (lib/video/synthetic_clip.py) with the ground truth as
the detector and the ground-truth keypoints (plus noise) as the pose, so that only the tracking logic is
measured. The demo runs use the official-format reference checkpoint (random-ish weights: the keypoints
mean nothing) at 128x96 without the flip test; they check the plumbing, not pose quality.
"""
from __future__ import annotations

import json
import os

import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from conftest import REFERENCE_CHECKPOINT, REPO_ROOT, SMALL_INPUT, load_script, load_tool
from lib.dataset.metainfo import COCO
from lib.video.capture import MAX_CONSECUTIVE_FAILURES, FrameReader
from lib.video.detector import (DetectorFileError, OnnxPersonDetector, ResizeTransform, box_iou,
                                export_fixed_box_detector)
from lib.video.pipeline import VideoPoseRunner
from lib.video.smoothing import OneEuroFilter
from lib.video.synthetic_clip import ClipConfig, render_clip, write_clip
from lib.video.tracking import PoseTracker, xywh_to_xyxy

pytestmark = pytest.mark.usefixtures('single_thread')
CFG = os.path.join(REPO_ROOT, 'experiments', 'coco', 'lite_hrnet', 'lite_hrnet_18_256x192.yaml')
MODEL = ['--cfg', CFG, 'TEST.MODEL_FILE', REFERENCE_CHECKPOINT, 'TEST.FLIP_TEST', 'False', *SMALL_INPUT]


@pytest.fixture(scope='module')
def demo():
    return load_script('demo', 'demo')


@pytest.fixture(scope='module')
def clip_file(tmp_path_factory) -> tuple[str, object]:
    """A 6-frame 160x120 synthetic clip at 10 fps written as MP4, and its ground truth."""
    path = str(tmp_path_factory.mktemp('clip') / 'walk.mp4')
    clip = write_clip(path, ClipConfig(image_size=(160, 120), num_people=2, num_frames=6, fps=10.0), seed=1)
    if cv2.VideoCapture(path).get(cv2.CAP_PROP_FRAME_COUNT) != 6:
        pytest.skip('this OpenCV build cannot write and read back mp4v video')
    return path, clip


def read_jsonl(path) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f]


def video_props(path) -> tuple[int, int, int, float]:
    capture = cv2.VideoCapture(str(path))
    props = (int(capture.get(cv2.CAP_PROP_FRAME_COUNT)), int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
             int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)), capture.get(cv2.CAP_PROP_FPS))
    capture.release()
    return props


# --- detector -----------------------------------------------------------------------------------------------
# Detections in frame pixels (x1, y1, x2, y2) of a 200x120 frame: two people, a duplicate of the first
# (NMS), a non-person class and a low score.
FRAME_W, FRAME_H = 200, 120
FRAME_BOXES = np.array([[20, 10, 80, 110], [120, 30, 180, 100], [22, 12, 82, 112], [100, 0, 150, 50],
                        [40, 20, 90, 90]], np.float64)
SCORES = [0.9, 0.8, 0.7, 0.95, 0.3]
LABELS = [0, 0, 0, 2, 0]
# The frame in the 320x320 detector input, worked out by hand: letterbox 1.6x (200x120 -> 320x192, padded
# below); plain 1.6x horizontally, 320/120 = 8/3 vertically.
INPUT_SCALE = {'letterbox': (1.6, 1.6), 'plain': (1.6, 8 / 3)}


def fixed_detector(tmp_path, mode: str) -> str:
    sx, sy = INPUT_SCALE[mode]
    return export_fixed_box_detector(str(tmp_path / f'det_{mode}.onnx'), FRAME_BOXES * [sx, sy, sx, sy], SCORES,
                                     LABELS, (320, 320))


@pytest.mark.parametrize('mode', ['letterbox', 'plain'])
def test_detector_boxes_reach_the_pose_model_in_frame_pixels(demo, tmp_path, mode) -> None:
    det = fixed_detector(tmp_path, mode)
    image = tmp_path / 'frame.png'
    cv2.imwrite(str(image), np.full((FRAME_H, FRAME_W, 3), 90, np.uint8))
    assert demo.main([*MODEL, '--image', str(image), '--det-model', det, '--det-resize', mode, '--json',
                      '--output', str(tmp_path / 'out')]) == 0
    with open(tmp_path / 'out' / 'frame_pose.json') as f:
        people = json.load(f)['people']
    # The person boxes 0 and 1 (x, y, w, h), best first; the duplicate, the other class and the low score are gone.
    np.testing.assert_allclose([p['box'] for p in people], [[20, 10, 60, 100], [120, 30, 60, 70]], atol=1e-3)
    assert [p['box_score'] for p in people] == pytest.approx([0.9, 0.8])


def test_detector_class_threshold_and_nms_filters(tmp_path) -> None:
    det = fixed_detector(tmp_path, 'letterbox')
    frame = np.zeros((FRAME_H, FRAME_W, 3), np.uint8)
    boxes, scores = OnnxPersonDetector(det, score_thr=0.5, nms_thr=1.0)(frame)  # no NMS: the duplicate stays
    np.testing.assert_allclose(xywh_to_xyxy(boxes), FRAME_BOXES[[0, 1, 2]], atol=1e-3)
    np.testing.assert_allclose(scores, [0.9, 0.8, 0.7], atol=1e-6)
    boxes, scores = OnnxPersonDetector(det, score_thr=0.2, nms_thr=0.65)(frame)  # the 0.3 box is kept now
    np.testing.assert_allclose(xywh_to_xyxy(boxes), FRAME_BOXES[[0, 1, 4]], atol=1e-3)
    assert box_iou(FRAME_BOXES[0], FRAME_BOXES[2])[0, 0] > 0.65 > box_iou(FRAME_BOXES[0], FRAME_BOXES[4])[0, 0]
    boxes, _ = OnnxPersonDetector(det, cat_id=2)(frame)  # another class id
    np.testing.assert_allclose(xywh_to_xyxy(boxes), FRAME_BOXES[[3]], atol=1e-3)
    # Preprocessing: (pixel - mean) / std per channel, BGR unless rgb; the letterbox padding is 114.
    frame[:] = (10, 20, 30)  # B, G, R
    blob, _ = OnnxPersonDetector(det, mean=(1, 2, 3), std=(2, 4, 8)).preprocess(frame)
    np.testing.assert_allclose(blob[0, :, 0, 0], [(10 - 1) / 2, (20 - 2) / 4, (30 - 3) / 8])
    np.testing.assert_allclose(blob[0, :, -1, 0], [(114 - 1) / 2, (114 - 2) / 4, (114 - 3) / 8])  # padding
    blob, _ = OnnxPersonDetector(det, mean=(1, 2, 3), std=(2, 4, 8), rgb=True).preprocess(frame)
    np.testing.assert_allclose(blob[0, :, 0, 0], [(30 - 1) / 2, (20 - 2) / 4, (10 - 3) / 8])
    # A 640x480 frame letterboxed into 320x320 is halved: a box at the input's bottom edge maps to y = 480.
    transform = ResizeTransform.fit((640, 480), (320, 320), 'letterbox')
    assert transform.resized_size == (320, 240)
    np.testing.assert_allclose(transform.to_frame([[0, 0, 320, 240]]), [[0, 0, 640, 480]])


def test_demo_passes_backend_precision_and_threads_only_when_given(demo, tmp_path, monkeypatch) -> None:
    seen = []
    real = demo.PoseEstimator

    def spy(cfg, **kwargs):
        seen.append(kwargs)
        return real(cfg, fold_bn=True)  # the torch network: this test is about what the flags pass on
    monkeypatch.setattr(demo, 'PoseEstimator', spy)
    image = tmp_path / 'frame.png'
    cv2.imwrite(str(image), np.full((40, 30, 3), 90, np.uint8))
    args = [*MODEL, '--image', str(image), '--output', str(tmp_path / 'out')]
    assert demo.main(args) == 0
    assert demo.main([*args, '--backend', 'onnxruntime', '--precision', 'fp32', '--threads', '1']) == 0
    assert seen == [{'fold_bn': True}, {'fold_bn': True, 'backend': 'onnxruntime', 'precision': 'fp32', 'threads': 1}]


def test_detector_file_in_another_format_is_one_clear_error(demo, tmp_path, capsys) -> None:
    graph = helper.make_graph(
        [helper.make_node('ReduceMean', ['images'], ['boxes'], axes=[1], keepdims=0),
         helper.make_node('Identity', ['boxes'], ['scores'])], 'not_end2end',
        [helper.make_tensor_value_info('images', TensorProto.FLOAT, [1, 3, 64, 64])],
        [helper.make_tensor_value_info('boxes', TensorProto.FLOAT, [1, 64, 64]),
         helper.make_tensor_value_info('scores', TensorProto.FLOAT, [1, 64, 64])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 13)])
    model.ir_version = 8
    wrong = str(tmp_path / 'yolo_raw.onnx')
    onnx.save(model, wrong)
    with pytest.raises(DetectorFileError, match="outputs 'dets' and 'labels' are missing") as err:
        OnnxPersonDetector(wrong)
    assert wrong in str(err.value) and "'scores'" in str(err.value)  # names the file and shows what it has

    image = tmp_path / 'frame.png'
    cv2.imwrite(str(image), np.zeros((40, 30, 3), np.uint8))
    assert demo.main(['--cfg', CFG, '--image', str(image), '--det-model', wrong]) == 2
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and wrong in err and "expected one float32 image input 1 x 3 x H x W" in err
    not_onnx = tmp_path / 'notes.onnx'
    not_onnx.write_text('hello')
    assert demo.main(['--cfg', CFG, '--image', str(image), '--det-model', str(not_onnx)]) == 2
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and 'notes.onnx: onnxruntime cannot load it' in err


# --- tracking -----------------------------------------------------------------------------------------------
def gt_stand_ins(clip, rng: np.random.Generator):
    """(detector, pose, frame setter): GT boxes; GT keypoints + 1 px noise of the GT person whose box overlaps
    the crop box most (as a network locks on the dominant person), score 0.9 where labelled. Each pose
    carries 'gt_id', the person it came from."""
    current = {'frame': 0}

    def detect(frame, index):
        truth = clip.people[index]
        return np.array([p['box'] for p in truth]).reshape(-1, 4), np.full(len(truth), 0.9)

    def pose(frame, boxes, scores):
        truth = clip.people[current['frame']]
        overlap = box_iou(xywh_to_xyxy(boxes), xywh_to_xyxy([p['box'] for p in truth]))
        out = []
        for box, score, row in zip(boxes, scores, overlap):
            person = truth[int(np.argmax(row))]
            kpts = person['keypoints'].copy()
            kpts[:, :2] += rng.normal(0, 1.0, (17, 2))
            kpts[:, 2] = np.where(kpts[:, 2] > 0, 0.9, 0.0)
            out.append({'keypoints': kpts, 'box': np.asarray(box, np.float64), 'score': float(score),
                        'gt_id': person['id']})
        return out
    return detect, pose, current


def test_tracking_keeps_ids_through_crossings_and_boxes_follow_people() -> None:
    clip = render_clip(ClipConfig(num_people=3, num_frames=60), seed=0)
    centers = np.array([[p['box'][0] + p['box'][2] / 2 for p in frame] for frame in clip.people])  # (60, 3)
    crossings = sum(np.sign(centers[0, a] - centers[0, b]) != np.sign(centers[-1, a] - centers[-1, b])
                    for a, b in ((0, 1), (0, 2), (1, 2)))
    assert crossings >= 2  # the clip really has people walking past each other
    detect, pose, current = gt_stand_ins(clip, np.random.default_rng(0))
    runner = VideoPoseRunner(pose, detect, PoseTracker(COCO.sigmas, kpt_thr=0.3, max_missed=3), det_interval=5)
    ids_of: dict[int, list[int]] = {0: [], 1: [], 2: []}
    followed_iou = []
    for f, frame in enumerate(clip.frames):
        current['frame'] = f
        people = runner(frame, f, f / clip.fps)
        assert sorted(p['gt_id'] for p in people) == [0, 1, 2]  # nobody lost, nobody doubled
        truth = {p['id']: p for p in clip.people[f]}
        for p in people:
            ids_of[p['gt_id']].append(p['id'])
            if not runner.detected:  # a box from the previous frame's keypoints, not from the detector
                followed_iou.append(box_iou(xywh_to_xyxy(p['box']), xywh_to_xyxy(truth[p['gt_id']]['box']))[0, 0])
    switches = sum(int(np.sum(np.diff(ids) != 0)) for ids in ids_of.values())
    assert switches == 0 and {i: ids[0] for i, ids in ids_of.items()} == {0: 0, 1: 1, 2: 2}
    assert len(followed_iou) == 48 * 3  # 60 frames, every 5th runs the detector
    # The followed box is the tight box of the joints (the crop adds 25 %); the GT box adds limb widths and
    # the head, and the person moved a frame: IoU 0.7 on average (measured 0.72).
    assert np.mean(followed_iou) > 0.65 and np.min(followed_iou) > 0.45


def test_tracker_drops_a_lost_track_and_gives_newcomers_new_ids() -> None:
    tracker = PoseTracker(COCO.sigmas, kpt_thr=0.3, max_missed=1)
    rng = np.random.default_rng(0)

    def person(x: float) -> dict:
        kpts = np.concatenate([rng.uniform([x, 10], [x + 40, 110], (17, 2)), np.full((17, 1), 0.9)], axis=1)
        return {'keypoints': kpts, 'box': np.array([x, 10, 40, 100.0]), 'score': 0.9}
    a, b = person(0), person(200)
    assert [p['id'] for p in tracker.update([a, b], 0.0)] == [0, 1]
    assert [p['id'] for p in tracker.update([b, a], 0.1)] == [1, 0]  # matched by pose, not by order
    assert [p['id'] for p in tracker.update([b], 0.2)] == [1]  # a missed once: kept
    assert [tr.id for tr in tracker.tracks] == [0, 1]
    tracker.update([b], 0.3)  # a missed twice > max_missed: dropped
    assert [tr.id for tr in tracker.tracks] == [1]
    assert [p['id'] for p in tracker.update([b, a], 0.4)] == [1, 2]  # a comes back as a newcomer


# --- smoothing ----------------------------------------------------------------------------------------------
def test_one_euro_filter_cuts_still_jitter_and_lags_a_moving_joint_little() -> None:
    fps, n = 25.0, 300
    rng = np.random.default_rng(0)
    still = 100.0 + rng.normal(0, 2.0, (n, 17, 2))  # a still joint seen with 2 px noise
    smoother = OneEuroFilter()  # the demo's defaults
    smoothed = np.array([smoother(still[i], i / fps) for i in range(n)])
    jitter = lambda x: np.abs(np.diff(x[25:], axis=0)).mean()  # noqa: E731  (mean frame-to-frame motion)
    assert jitter(still) / jitter(smoothed) >= 4.0  # measured 5.5x

    speed = 6.0  # px per frame = 150 px/s at 25 fps, a brisk walk in a 640x480 video
    truth = speed * np.arange(n)
    smoother = OneEuroFilter()
    moving = np.array([smoother(np.array([x]), i / fps)[0] for i, x in enumerate(truth)])
    lag_frames = (truth - moving)[50:] / speed
    assert lag_frames.max() <= 1.0 and lag_frames.min() >= 0  # measured 0.66 frames, never ahead

    smoother.reset()
    np.testing.assert_array_equal(smoother(np.array([5.0]), 100.0), [5.0])  # after a reset: no memory


# --- frame reading ------------------------------------------------------------------------------------------
class ScriptedCapture:
    """A cv2.VideoCapture stand-in over a list of frames; `fail` maps frame index -> 'grab' or 'retrieve'."""

    def __init__(self, frames: list, fail: dict | None = None, count: int | None = None, fps: float = 10.0) -> None:
        self.frames, self.fail, self.pos = frames, fail or {}, 0
        self.props = {cv2.CAP_PROP_FRAME_COUNT: len(frames) if count is None else count, cv2.CAP_PROP_FPS: fps}
        self.released = False

    def isOpened(self) -> bool:
        return True

    def get(self, prop: int) -> float:
        return float(self.props.get(prop, 0))

    def grab(self) -> bool:
        self.pos += 1
        return self.pos <= len(self.frames) and self.fail.get(self.pos - 1) != 'grab'

    def retrieve(self):
        if self.fail.get(self.pos - 1) == 'retrieve':
            return False, None
        return True, self.frames[self.pos - 1]

    def read(self):
        return (self.retrieve() if self.grab() else (False, None))

    def release(self) -> None:
        self.released = True


def test_frame_reader_skips_undecodable_frames_and_finds_the_end() -> None:
    frames = [np.full((4, 4, 3), i, np.uint8) for i in range(8)]
    reader = FrameReader(ScriptedCapture(frames, fail={2: 'retrieve', 5: 'grab'}))
    got = list(reader)
    assert [i for i, _, _ in got] == [0, 1, 3, 4, 6, 7] and [int(f[0, 0, 0]) for _, _, f in got] == [0, 1, 3, 4, 6, 7]
    assert [t for _, t, _ in got] == pytest.approx([0.0, 0.1, 0.3, 0.4, 0.6, 0.7])  # index / fps
    assert (reader.skipped, reader.unread_at_end) == (2, 0)

    reader = FrameReader(ScriptedCapture(frames[:3], count=5))  # the file lists 2 frames more than it has
    assert len(list(reader)) == 3 and (reader.skipped, reader.unread_at_end) == (0, 2)
    reader = FrameReader(ScriptedCapture(frames[:3], count=0))  # no frame count: a failed grab is the end
    assert len(list(reader)) == 3 and (reader.skipped, reader.unread_at_end) == (0, 0)
    reader = FrameReader(ScriptedCapture(frames, fail={i: 'retrieve' for i in range(1, 8)}))
    assert len(list(reader)) == 1 and (reader.skipped, reader.unread_at_end) == (0, 7)  # bad frames up to the end
    # MAX_CONSECUTIVE_FAILURES bad frames in a row end the stream, although good frames follow
    many = [np.full((4, 4, 3), i % 256, np.uint8) for i in range(MAX_CONSECUTIVE_FAILURES + 3)]
    reader = FrameReader(ScriptedCapture(many, fail={i: 'retrieve' for i in range(1, MAX_CONSECUTIVE_FAILURES + 1)}))
    assert [i for i, _, _ in reader] == [0]
    assert (reader.skipped, reader.unread_at_end) == (0, MAX_CONSECUTIVE_FAILURES)  # each bad frame counted
    one_fewer = {i: 'retrieve' for i in range(1, MAX_CONSECUTIVE_FAILURES)}  # then a good frame: all were skipped
    reader = FrameReader(ScriptedCapture(many, fail=one_fewer))
    assert [i for i, _, _ in reader][:2] == [0, MAX_CONSECUTIVE_FAILURES] and reader.skipped == len(one_fewer)


# --- demo on video and camera -------------------------------------------------------------------------------
def test_demo_video_writes_jsonl_with_ids_and_an_mp4_like_the_source(demo, clip_file, tmp_path) -> None:
    path, clip = clip_file
    transform = ResizeTransform.fit((160, 120), (320, 320), 'letterbox')
    det = export_fixed_box_detector(str(tmp_path / 'det.onnx'),
                                    transform.to_input(xywh_to_xyxy([p['box'] for p in clip.people[0]])),
                                    [0.9, 0.8], [0, 0], (320, 320))
    out = tmp_path / 'out'
    assert demo.main([*MODEL, '--video', path, '--det-model', det, '--det-interval', '3', '--smooth',
                      '--kpt-thr', '0', '--output', str(out)]) == 0
    lines = read_jsonl(out / 'walk_pose.jsonl')
    assert [r['frame'] for r in lines] == list(range(6))
    assert [r['time'] for r in lines] == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4, 0.5])
    ids = [[p['id'] for p in r['people']] for r in lines]
    assert ids[:3] == [[0, 1]] * 3  # frames 1-2 followed by the tracker: the same people, the same ids
    # frame 3 is a detector frame again; the test model is untrained, so its poses need not match the tracks
    # by OKS (test_tracking_* and test_tracker_* cover the matching), but ids are never reused and frames
    # 4-5 follow frame 3's people
    assert len(ids[3]) == 2 and ids[4:] == [ids[3]] * 2 and (ids[3] == [0, 1] or min(ids[3]) >= 2)
    for r in lines:
        assert all(len(p['keypoints']) == 17 and len(p['box']) == 4 for p in r['people'])
    assert video_props(out / 'walk_pose.mp4') == (6, 160, 120, 10.0)
    assert not (out / 'walk_pose.json').exists()  # the single JSON document only with --json
    # --smooth filters the keypoints: the first frame is the raw one (the filter starts there), later ones differ
    raw_out = tmp_path / 'raw'
    assert demo.main([*MODEL, '--video', path, '--det-model', det, '--det-interval', '3', '--kpt-thr', '0',
                      '--output', str(raw_out)]) == 0
    raw = read_jsonl(raw_out / 'walk_pose.jsonl')

    def xy(records, frame: int) -> np.ndarray:
        return np.array([[k[:2] for k in p['keypoints']] for p in records[frame]['people']])
    np.testing.assert_allclose(xy(lines, 0), xy(raw, 0), atol=1e-3)
    assert any(np.abs(xy(lines, f) - xy(raw, f)).max() > 0.1 for f in range(1, 6))


def test_demo_camera_through_a_capture_stand_in(demo, clip_file, tmp_path, monkeypatch, capsys, caplog) -> None:
    path, _ = clip_file
    monkeypatch.delenv('DISPLAY', raising=False)
    monkeypatch.delenv('WAYLAND_DISPLAY', raising=False)
    opened = []
    real_capture = cv2.VideoCapture

    def camera(source, *args):  # camera 0 is the clip file; anything else is a real capture
        opened.append(source)
        return real_capture(path) if source == 0 else real_capture(source, *args)
    monkeypatch.setattr(cv2, 'VideoCapture', camera)
    out = tmp_path / 'out'
    assert demo.main([*MODEL, '--camera', '0', '--bbox', '10,10,60,100', '--output', str(out), '--show']) == 0
    assert opened == [0]
    lines = read_jsonl(out / 'camera0_pose.jsonl')
    assert [r['frame'] for r in lines] == list(range(6))
    times = [r['time'] for r in lines]
    assert times[0] == 0.0 and all(b >= a for a, b in zip(times, times[1:]))  # wall-clock seconds
    assert all(r['people'][0]['box'] == [10, 10, 60, 100] for r in lines)
    assert video_props(out / 'camera0_pose.mp4')[:3] == (6, 160, 120)
    assert 'camera0: 6 frame(s)' in capsys.readouterr().out
    assert '--show: no display (DISPLAY and WAYLAND_DISPLAY are unset)' in caplog.text  # warned, and went on


def test_demo_skips_an_undecodable_frame_and_finishes(demo, clip_file, tmp_path, monkeypatch, capsys) -> None:
    path, clip = clip_file
    monkeypatch.setattr(cv2, 'VideoCapture', lambda source: ScriptedCapture(clip.frames, fail={2: 'retrieve'}))
    out = tmp_path / 'out'
    assert demo.main([*MODEL, '--video', path, '--bbox', '10,10,60,100', '--output', str(out), '--json']) == 0
    assert [r['frame'] for r in read_jsonl(out / 'walk_pose.jsonl')] == [0, 1, 3, 4, 5]
    with open(out / 'walk_pose.json') as f:
        assert [r['frame'] for r in json.load(f)['frames']] == [0, 1, 3, 4, 5]
    stdout = capsys.readouterr().out
    assert 'walk.mp4: 5 frame(s)' in stdout and 'walk.mp4: 1 frame(s) could not be decoded and were skipped' in stdout


def test_demo_missing_video_is_one_clear_error(demo, tmp_path, capsys) -> None:
    missing = tmp_path / 'nope.mp4'
    assert demo.main(['--cfg', CFG, '--video', str(missing)]) == 2
    captured = capsys.readouterr()
    assert captured.err == f'error: --video {missing}: no such file\n' and captured.out == ''


# --- benchmark ----------------------------------------------------------------------------------------------
def test_benchmark_video_reports_every_stage_for_each_people_count(capsys) -> None:
    tool = load_tool('benchmark')
    assert tool.main(['video', '--people', '1,2', '--frames', '6', '--warmup', '2', '--det-interval', '3',
                      '--size', '160', '120', '--threads', '1', '--json', 'TEST.FLIP_TEST', 'False',
                      *SMALL_INPUT]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report['subcommand'] == 'video' and report['input_hw'] == [128, 96] and report['det_interval'] == 3
    assert [(r['people'], r['backend']) for r in report['results']] == [(1, 'torch'), (2, 'torch')]
    for r in report['results']:
        assert r['people_per_frame'] == r['people']  # every frame posed everyone, detector frame or not
        assert all(r['ms'][stage] > 0 for stage in ('crop', 'network', 'tracking', 'drawing'))
        assert r['detector_ms_per_call'] > 0 and r['pose_fps'] > r['e2e_fps'] > r['e2e_fps_with_detector'] > 0


@pytest.mark.parametrize('flag, value', [('det_file', 'dets.json'), ('bbox', [(0.0, 0.0, 10.0, 20.0)])])
def test_demo_refuses_a_second_box_source_beside_the_detector(demo, flag, value) -> None:
    import argparse
    args = argparse.Namespace(det_model='detector.onnx', det_file='', bbox=[])
    setattr(args, flag, value)
    with pytest.raises(demo.DemoError, match=f"--{flag.replace('_', '-')} and --det-model are two sources"):
        demo.build_detector(args)
