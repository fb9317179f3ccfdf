"""`python tools/benchmark.py video`: real-time numbers of the video demo's pipeline, stage by stage.

    python tools/benchmark.py video                                  # 1 and 5 people, detector every 5 frames
    python tools/benchmark.py video --backends torch,onnxruntime,openvino TEST.FLIP_TEST False

Registered in tools/benchmark.py by `add_video_subcommand`; it shares that tool's config loading
(Kaiming init unless TEST.MODEL_FILE), realistic random weights, table and JSON output.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np
import torch

from lib.core.inference import PoseEstimator
from lib.video.detector import OnnxPersonDetector, ResizeTransform, export_fixed_box_detector
from lib.video.drawing import draw_fps, draw_people
from lib.video.pipeline import VideoPoseRunner
from lib.video.synthetic_clip import ClipConfig, SyntheticClip, render_clip
from lib.video.tracking import PoseTracker, xywh_to_xyxy

__all__ = ['add_video_subcommand', 'run_video']

DETECTOR_INPUT = (320, 320)  # (W, H) of the stand-in detector file
STAGES = ('detector', 'crop', 'network', 'tracking', 'drawing')


def add_video_subcommand(subcommand, tool) -> argparse.ArgumentParser:
    """Add `video` with tools/benchmark.py's `subcommand(name, run, summary)`; `tool` is that module
    (its load_cfg, realistic_model, print_table and emit_json are used)."""
    p = subcommand('video', run_video, 'video pipeline FPS: detector, crop, pose network, tracking, drawing')
    p.set_defaults(run=lambda args: run_video(args, tool))
    p.add_argument('--people', default='1,5', help='people in the clip, one run per number (comma-separated)')
    p.add_argument('--frames', type=int, default=100, help='timed frames per run (after --warmup frames)')
    p.add_argument('--warmup', type=int, default=10, help='frames run before timing starts')
    p.add_argument('--det-interval', type=int, default=5, help='detector every K frames, tracking in between')
    p.add_argument('--size', type=int, nargs=2, default=[640, 480], metavar=('W', 'H'), help='clip frame size')
    p.add_argument('--backends', default='torch', help='pose network runtimes, comma-separated, from '
                   'torch,onnxruntime,openvino')
    p.add_argument('--precision', default=None, help='pose network precision (default TEST.PRECISION); bf16 '
                   'and int8 need a model file made for them (TEST.MODEL_FILE)')
    p.add_argument('--seed', type=int, default=0, help='seed of the synthetic clip')
    return p


def run_video(args: argparse.Namespace, tool=None) -> int:
    """Frames per second of the video demo's pipeline (lib.video.pipeline.VideoPoseRunner, as demo/demo.py
    runs it) on a synthetic clip of people walking across a background (lib.video.synthetic_clip), for
    each number of people (--people) and pose backend (--backends):
      detector   a stand-in end-to-end ONNX detector emitting the first frame's boxes (its cost is a
                 resize, normalisation and one pass over the input: a real RTMDet costs far more), run
                 every --det-interval frames; reported per call and left out of the end-to-end FPS
      crop       PoseEstimator.preprocess: the affine crops and normalisation (timed again on its own)
      network    the pose network with the flip test (TEST.FLIP_TEST) and heatmap decoding
                 (= PoseEstimator.predict minus crop)
      tracking   ids (OKS matching) and the boxes followed between detector frames
      drawing    boxes, ids, skeletons and the FPS overlay
    pose-only FPS = 1 / (crop + network); end-to-end FPS = 1 / (crop + network + tracking + drawing) per
    frame, without the detector (and video decoding/encoding), then with the stand-in detector amortised.
    Random weights (no TEST.MODEL_FILE) give meaningless keypoints, so the boxes between detector frames
    are then taken around all joints whatever their scores; the table's 'people/frame' column shows that
    every frame posed every person. Times are means over the timed frames, on whatever else the machine runs.
    """
    cfg = tool.load_cfg(args)
    model, source = tool.realistic_model(cfg)
    backends = [b.strip() for b in args.backends.split(',') if b.strip()]
    counts = [int(n) for n in args.people.split(',')]
    rows, results = [], []
    with tempfile.TemporaryDirectory() as folder:
        estimators = {b: build_estimator(cfg, model, b, args, folder) for b in backends}
        for n in counts:
            clip = render_clip(ClipConfig(image_size=tuple(args.size), num_people=n,
                                          num_frames=args.warmup + args.frames), seed=args.seed)
            detector = stand_in_detector(clip, os.path.join(folder, f'detector_{n}.onnx'), args.threads)
            for backend, estimator in estimators.items():
                result = time_clip(clip, estimator, detector, args, bool(cfg.TEST.MODEL_FILE))
                results.append(dict(result, people=n, backend=backend))
                rows.append(table_row(results[-1]))
                print(f'{n} people, {backend}: end-to-end {result["e2e_fps"]:.1f} FPS', flush=True)
    height, width = cfg.MODEL.IMAGE_SIZE[1], cfg.MODEL.IMAGE_SIZE[0]
    print(f'\n{cfg.MODEL.NAME} {height}x{width}, flip test {"on" if cfg.TEST.FLIP_TEST else "off"}, '
          f'{torch.get_num_threads()} thread(s), weights: {source}; clip {args.size[0]}x{args.size[1]}, '
          f'{args.frames} timed frames, detector every {args.det_interval} frames; ms per frame (mean)')
    tool.print_table(['people', 'backend', 'detector ms/call', 'crop', 'network', 'tracking', 'drawing',
                      'pose-only FPS', 'end-to-end FPS (no detector)', 'with stand-in detector',
                      'people/frame'], rows)
    tool.emit_json(args, {'subcommand': 'video', 'variant': cfg.MODEL.NAME, 'input_hw': [height, width],
                          'flip_test': bool(cfg.TEST.FLIP_TEST), 'threads': torch.get_num_threads(),
                          'clip_size': list(args.size), 'frames': args.frames, 'det_interval': args.det_interval,
                          'results': results})
    return 0


def build_estimator(cfg, model: torch.nn.Module, backend: str, args: argparse.Namespace,
                    folder: str) -> PoseEstimator:
    """The pose estimator on `model`'s weights: the module itself (torch, BN folded), or for the other
    runtimes TEST.MODEL_FILE, else the weights saved to a checkpoint they export on the fly."""
    options = {'precision': args.precision} if args.precision else {}
    if backend == 'torch':
        return PoseEstimator(cfg, weights=model, fold_bn=True, backend='torch', **options)
    weights = cfg.TEST.MODEL_FILE
    if not weights:
        weights = os.path.join(folder, 'weights.pth')
        if not os.path.isfile(weights):
            torch.save(model.state_dict(), weights)
    return PoseEstimator(cfg, weights=weights, backend=backend, threads=args.threads or None, **options)


def stand_in_detector(clip: SyntheticClip, path: str, threads: int) -> OnnxPersonDetector:
    """A detector file that emits the clip's first-frame boxes (in its input pixels), and its session."""
    transform = ResizeTransform.fit(clip.size, DETECTOR_INPUT, 'letterbox')
    boxes = transform.to_input(xywh_to_xyxy([p['box'] for p in clip.people[0]]))
    export_fixed_box_detector(path, boxes, np.full(len(boxes), 0.9), np.zeros(len(boxes), np.int64), DETECTOR_INPUT)
    return OnnxPersonDetector(path, threads=threads or None)


def time_clip(clip: SyntheticClip, estimator: PoseEstimator, detector: OnnxPersonDetector,
              args: argparse.Namespace, trained: bool) -> dict:
    """Mean seconds per frame of each stage over the timed frames (see run_video)."""
    kpt_thr = 0.3 if trained else -np.inf  # random weights: follow the box around all joints
    tracker = PoseTracker(estimator.metainfo.sigmas, kpt_thr=kpt_thr)
    runner = VideoPoseRunner(estimator.predict, lambda frame, index: detector(frame), tracker, args.det_interval)
    log = {stage: [] for stage in STAGES + ('pose', 'people')}
    det_calls = []
    crop_s = [0.0]  # the crops of this frame's predict call: its share that is not the network
    preprocess = estimator.preprocess

    def timed_preprocess(*call_args, **call_kwargs):
        start = time.perf_counter()
        out = preprocess(*call_args, **call_kwargs)
        crop_s[0] += time.perf_counter() - start
        return out
    estimator.preprocess = timed_preprocess  # this instance only: predict calls it once per frame
    try:
        for f, frame in enumerate(clip.frames):
            crop_s[0] = 0.0
            people = runner(frame, f, f / clip.fps)
            crop = crop_s[0]
            start = time.perf_counter()
            draw_fps(draw_people(frame, people, estimator.metainfo, max(kpt_thr, 0.0)), 0.0, 0.0)
            drawing = time.perf_counter() - start
            if f < args.warmup:
                continue
            times = runner.times
            if runner.detected:
                det_calls.append(times['detector'])
            for stage, value in (('detector', times.get('detector', 0.0)), ('crop', crop),
                                 ('network', times['pose'] - crop), ('pose', times['pose']),
                                 ('tracking', times['tracking']), ('drawing', drawing), ('people', len(people))):
                log[stage].append(value)
    finally:
        del estimator.preprocess  # the class's method again
    mean = {stage: float(np.mean(values)) for stage, values in log.items()}
    per_frame = mean['pose'] + mean['tracking'] + mean['drawing']
    det_ms = float(np.mean(det_calls)) * 1e3 if det_calls else float('nan')  # no detector frame was timed
    return {'ms': {s: mean[s] * 1e3 for s in STAGES}, 'detector_ms_per_call': det_ms,
            'pose_fps': 1.0 / mean['pose'], 'e2e_fps': 1.0 / per_frame,
            'e2e_fps_with_detector': 1.0 / (per_frame + mean['detector']), 'people_per_frame': mean['people']}


def table_row(r: dict) -> list:
    ms = r['ms']
    return [r['people'], r['backend'], f"{r['detector_ms_per_call']:.2f}", f"{ms['crop']:.2f}",
            f"{ms['network']:.2f}", f"{ms['tracking']:.2f}", f"{ms['drawing']:.2f}", f"{r['pose_fps']:.1f}",
            f"{r['e2e_fps']:.1f}", f"{r['e2e_fps_with_detector']:.1f}", f"{r['people_per_frame']:.2f}"]
