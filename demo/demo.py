"""Run Lite-HRNet on your images, a video or a camera and draw the skeletons.

    python demo/demo.py --cfg experiments/coco/lite_hrnet/lite_hrnet_18_256x192.yaml \\
        TEST.MODEL_FILE litehrnet_18_coco_256x192.pth --image photo.jpg --json
    python demo/demo.py --cfg ... TEST.MODEL_FILE ... --video clip.mp4 --det-model end2end.onnx \\
        --det-interval 5 --smooth TEST.FLIP_TEST False
    python demo/demo.py --cfg ... TEST.MODEL_FILE ... --camera 0 --det-model end2end.onnx --show

Person boxes come from, in this order of preference:
  --bbox x,y,w,h (repeatable)      the same boxes for every image / frame;
  --det-file dets.json             COCO-format detections [{image_id, bbox, score, category_id}],
                                   kept when score >= --det-thr and category_id is 1 (person) or absent.
                                   An image is matched to its image_id by --ann-file (a COCO annotation
                                   file: images[].file_name -> id) or else by its numeric file name
                                   (000000000785.jpg -> 785); a video frame's image_id is its index (0-based);
  --det-model end2end.onnx         a person detector file in mmdeploy's end-to-end format (lib/video/detector.py),
                                   run in onnxruntime; boxes of class --det-cat-id with score >= --det-thr;
  nothing                          the whole image is one person box.
Video and camera: the boxes are taken every --det-interval frames; in between each person is followed
from their previous keypoints (lib/video/tracking.py), people keep an id, and --smooth runs a One-Euro
filter on their joints. Outputs go to --output (default output/demo): <name>_pose.<ext> with the skeletons
drawn (joints below --kpt-thr are left out); with --json <name>_pose.json holding every person's box,
box score and K keypoints [x, y, score] in image pixels. A video or camera also writes <name>_pose.mp4
(same size and fps, with ids and an FPS overlay) and <name>_pose.jsonl, one line per frame. Warnings: a
--bbox with no pixel inside the image (its keypoints mean nothing), detection scores above 1 (--det-thr
expects [0, 1]); a NaN score or box in --det-file is an error.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time

import _init_paths  # noqa: F401  (puts the repository root on sys.path)
import cv2
import numpy as np
import torch
from tqdm import tqdm

from lib.config import ConfigError, load_config
from lib.core.inference import PoseEstimator
from lib.dataset import IMAGE_EXTENSIONS
from lib.utils.checkpoint import CheckpointError
from lib.utils.cli import parse_args_with_overrides
from lib.utils.logger import UserError
from lib.video.capture import FrameReader
from lib.video.detector import RESIZE_MODES, RTMDET_MEAN, RTMDET_STD, OnnxPersonDetector
from lib.video.drawing import draw_fps, draw_people
from lib.video.pipeline import RunningRate, VideoPoseRunner
from lib.video.smoothing import DEFAULT_BETA, DEFAULT_D_CUTOFF, DEFAULT_MIN_CUTOFF
from lib.video.tracking import PoseTracker

logger = logging.getLogger('demo')


class DemoError(Exception):
    """A bad input file or argument; main prints the message and exits with status 2."""


def parse_box(text: str) -> list[float]:
    """'x,y,w,h' -> [x, y, w, h] (argparse type)."""
    try:
        box = [float(v) for v in text.split(',')]
    except ValueError:
        box = []
    if len(box) != 4 or box[2] <= 0 or box[3] <= 0:
        raise argparse.ArgumentTypeError(f"--bbox expects x,y,w,h with w, h > 0, got '{text}'")
    return box


def parse_numbers(count: int):
    """argparse type: `count` comma-separated numbers, e.g. '103.53,116.28,123.675'."""
    def parse(text: str) -> list[float]:
        try:
            values = [float(v) for v in text.split(',')]
        except ValueError:
            values = []
        if len(values) != count:
            raise argparse.ArgumentTypeError(f"expected {count} comma-separated numbers, got '{text}'")
        return values
    return parse


def at_least(low: int):
    """argparse type: an integer >= low."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = low - 1
        if value < low:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got '{text}'")
        return value
    return parse


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--cfg', required=True, help='experiment YAML file')
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument('--image', help='an image file or a folder of images')
    source.add_argument('--video', help='a video file')
    source.add_argument('--camera', type=int, help='a camera index (cv2.VideoCapture(INDEX)); stop with q/Esc '
                        'in the --show window, Ctrl-C or --max-frames')
    parser.add_argument('--output', default=os.path.join('output', 'demo'), help='output folder')
    parser.add_argument('--kpt-thr', type=float, default=0.3, help='joints with a lower score are not drawn (and '
                        'do not count for tracking)')
    parser.add_argument('--json', action='store_true', help='also write the keypoints as one JSON file')
    parser.add_argument('--backend', choices=('torch', 'onnxruntime', 'openvino'), default=None,
                        help='pose network runtime (default: TEST.BACKEND)')
    parser.add_argument('--precision', choices=('fp32', 'bf16', 'int8'), default=None,
                        help='pose network precision (default: TEST.PRECISION)')
    parser.add_argument('--threads', type=at_least(1), default=None, help="intra-op threads of the pose network "
                        "(torch, onnxruntime, openvino) and the detector (default: the libraries' own)")
    add_box_args(parser.add_argument_group('person boxes'))
    add_video_args(parser.add_argument_group('video and camera'))
    return parse_args_with_overrides(parser, argv)


def add_box_args(group) -> None:
    group.add_argument('--bbox', type=parse_box, action='append', default=[], help='person box x,y,w,h')
    group.add_argument('--det-file', default='', help='COCO-format person detections (JSON list)')
    group.add_argument('--ann-file', default='', help='COCO annotation file mapping file names to image ids')
    group.add_argument('--det-thr', type=float, default=0.5, help='detection score threshold (--det-file, '
                       '--det-model)')
    group.add_argument('--det-model', default='', help="an end-to-end ONNX detector (mmdeploy's end2end.onnx: "
                       "input 1x3xHxW, outputs dets 1xNx5 and labels 1xN)")
    group.add_argument('--det-resize', choices=RESIZE_MODES, default='letterbox',
                       help='letterbox: keep the aspect ratio, pad bottom/right with 114 (mmdet RTMDet/YOLOX); '
                       'plain: stretch to the input size')
    group.add_argument('--det-mean', type=parse_numbers(3), default=list(RTMDET_MEAN),
                       help='detector input mean per channel, in the order fed (default: RTMDet, BGR)')
    group.add_argument('--det-std', type=parse_numbers(3), default=list(RTMDET_STD),
                       help='detector input std per channel (default: RTMDet; YOLOX: --det-mean 0,0,0 '
                       '--det-std 1,1,1)')
    group.add_argument('--det-rgb', action='store_true', help='feed the detector RGB (default BGR, as RTMDet)')
    group.add_argument('--det-cat-id', type=int, default=0, help="the person class id in the detector's labels")
    group.add_argument('--det-nms-thr', type=float, default=0.65, help='drop a detector box overlapping a better '
                       'one by more IoU than this (1: off)')
    group.add_argument('--det-size', type=parse_numbers(2), default=None, metavar='W,H',
                       help='detector input size for a file with dynamic height/width (default 640,640)')


def add_video_args(group) -> None:
    group.add_argument('--det-interval', type=at_least(1), default=1, help='take boxes every K frames and '
                       'follow people from their keypoints in between')
    group.add_argument('--track-max-missed', type=at_least(0), default=3, help='forget a person (and their id) '
                       'after this many frames without them')
    group.add_argument('--smooth', action='store_true', help='One-Euro filter on each tracked joint')
    group.add_argument('--smooth-min-cutoff', type=float, default=DEFAULT_MIN_CUTOFF,
                       help='One-Euro cutoff (Hz) of a still joint: lower = smoother')
    group.add_argument('--smooth-beta', type=float, default=DEFAULT_BETA,
                       help='One-Euro cutoff increase per px/s of joint speed: higher = less lag')
    group.add_argument('--smooth-d-cutoff', type=float, default=DEFAULT_D_CUTOFF,
                       help='One-Euro cutoff (Hz) of the speed estimate')
    group.add_argument('--show', action='store_true', help='show the frames in a window (needs a display)')
    group.add_argument('--max-frames', type=int, default=0, help='stop after this many frames (0 = all)')


# ---------------------------------------------------------------------------------------------
# Person boxes
def _read_json(path: str, what: str):
    try:
        with open(path) as f:
            return json.load(f)
    except OSError as err:
        raise DemoError(f'{what} {path}: cannot read: {err.strerror}') from None
    except json.JSONDecodeError as err:
        raise DemoError(f'{what} {path}: not valid JSON: {err}') from None


def load_detections(path: str, score_thr: float) -> dict[int, list[tuple[list[float], float]]]:
    """image_id -> [(box xywh, score)] for person detections with score >= score_thr."""
    dets = _read_json(path, '--det-file')
    if not isinstance(dets, list):
        raise DemoError(f'--det-file {path}: expected a JSON list of detections, got {type(dets).__name__}')
    by_image: dict[int, list[tuple[list[float], float]]] = {}
    above_one = 0
    for i, det in enumerate(dets):
        try:
            image_id, box, score = int(det['image_id']), [float(v) for v in det['bbox']], float(det['score'])
        except (KeyError, TypeError, ValueError):
            raise DemoError(f'--det-file {path}: entry {i} needs image_id, bbox [x, y, w, h] and score, '
                            f'got {det!r}') from None
        if len(box) != 4:
            raise DemoError(f'--det-file {path}: entry {i} bbox must have 4 numbers, got {box}')
        if not np.isfinite([score, *box]).all():  # a NaN score would fail the threshold: a person lost silently
            raise DemoError(f'--det-file {path}: entry {i} has a NaN or infinite score or bbox: '
                            f'score {score}, bbox {box}')
        if score > 1:
            above_one += 1
        if det.get('category_id', 1) == 1 and score >= score_thr and box[2] > 0 and box[3] > 0:
            by_image.setdefault(image_id, []).append((box, score))
    if above_one:
        logger.warning('--det-file %s: %d detection score(s) above 1; --det-thr %g expects scores in [0, 1]',
                       path, above_one, score_thr)
    return by_image


def load_image_ids(path: str) -> dict[str, int]:
    """File name (basename) -> image id, from a COCO annotation file's `images` list."""
    data = _read_json(path, '--ann-file')
    try:
        return {os.path.basename(img['file_name']): int(img['id']) for img in data['images']}
    except (KeyError, TypeError, ValueError):
        raise DemoError(f"--ann-file {path}: expected a COCO annotation file with images[].file_name and id") from None


def image_id_of(path: str, name_to_id: dict[str, int]) -> int:
    name = os.path.basename(path)
    if name in name_to_id:
        return name_to_id[name]
    stem = os.path.splitext(name)[0]
    if stem.isdigit():
        return int(stem)
    raise DemoError(f'{path}: cannot match this image to a detection image_id: it is not in --ann-file and '
                    f'its file name is not a number (like 000000000785.jpg)')


def build_detector(args: argparse.Namespace) -> OnnxPersonDetector | None:
    if not args.det_model:
        return None
    for flag, value in (('--det-file', args.det_file), ('--bbox', args.bbox)):
        if value:  # the other source would win and the detector would load for nothing
            raise DemoError(f'{flag} and --det-model are two sources of person boxes: give one')
    return OnnxPersonDetector(args.det_model, resize=args.det_resize, mean=args.det_mean, std=args.det_std,
                              rgb=args.det_rgb, cat_id=args.det_cat_id, score_thr=args.det_thr,
                              nms_thr=args.det_nms_thr, input_size=args.det_size, threads=args.threads)


class BoxSource:
    """Boxes and scores for a frame: --bbox, else detections of its image id, else the detector model, else
    the whole frame."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.fixed = np.array(args.bbox, dtype=np.float64).reshape(-1, 4)
        self.dets = load_detections(args.det_file, args.det_thr) if args.det_file else None
        self.name_to_id = load_image_ids(args.ann_file) if args.ann_file else {}
        self.detector = build_detector(args)
        self._warned: set[tuple] = set()  # (box, image size) pairs already reported

    def __call__(self, image: np.ndarray, image_id: int | None) -> tuple[np.ndarray, np.ndarray]:
        if len(self.fixed):
            self.warn_outside(self.fixed, image.shape[1], image.shape[0])
            return self.fixed, np.ones(len(self.fixed))
        if self.dets is not None:
            found = self.dets.get(image_id, [])
            return (np.array([b for b, _ in found], dtype=np.float64).reshape(-1, 4),
                    np.array([s for _, s in found], dtype=np.float64))
        if self.detector is not None:
            return self.detector(image)
        h, w = image.shape[:2]
        return np.array([[0.0, 0.0, w, h]]), np.ones(1)

    def warn_outside(self, boxes: np.ndarray, width: int, height: int) -> None:
        """One warning per --bbox that has no pixel in common with a width x height image (each size once)."""
        for x, y, w, h in boxes:
            key = (x, y, w, h, width, height)
            if key in self._warned or (x < width and y < height and x + w > 0 and y + h > 0):
                continue
            self._warned.add(key)
            logger.warning('--bbox %g,%g,%g,%g lies outside the %dx%d image: its keypoints will be meaningless',
                           x, y, w, h, width, height)


# ---------------------------------------------------------------------------------------------
# Output
def people_json(people: list[dict]) -> list[dict]:
    return [{**({'id': int(p['id'])} if 'id' in p else {}),
             'box': [round(float(v), 2) for v in p['box']], 'box_score': round(p['score'], 5),
             'keypoints': [[round(float(x), 2), round(float(y), 2), round(float(s), 5)]
                           for x, y, s in p['keypoints']]} for p in people]


def frame_record(index: int, t: float, people: list[dict]) -> dict:
    """One frame of the JSON-lines (and --json) output."""
    return {'frame': index, 'time': round(t, 4), 'people': people_json(people)}


def write_json(path: str, data: dict) -> None:
    with open(path, 'w') as f:
        json.dump(data, f, indent=1)


def output_path(args: argparse.Namespace, source: str, ext: str | None = None) -> str:
    stem, src_ext = os.path.splitext(os.path.basename(source))
    return os.path.join(args.output, f'{stem}_pose{ext or src_ext}')


# ---------------------------------------------------------------------------------------------
# Images
def list_images(path: str) -> list[str]:
    if os.path.isdir(path):
        files = sorted(os.path.join(path, f) for f in os.listdir(path) if f.lower().endswith(IMAGE_EXTENSIONS))
        if not files:
            raise DemoError(f'--image {path}: the folder holds no images ({", ".join(IMAGE_EXTENSIONS)})')
        return files
    if not os.path.isfile(path):
        raise DemoError(f'--image {path}: no such file or folder')
    return [path]


def run_images(estimator: PoseEstimator, args: argparse.Namespace, boxes_for: BoxSource) -> None:
    for path in list_images(args.image):
        image = cv2.imread(path, cv2.IMREAD_COLOR)
        if image is None:
            raise DemoError(f'{path}: not a readable image')
        image_id = image_id_of(path, boxes_for.name_to_id) if boxes_for.dets is not None else None
        boxes, scores = boxes_for(image, image_id)
        people = estimator.predict(image, boxes, scores)
        out = output_path(args, path)
        if not cv2.imwrite(out, draw_people(image, people, estimator.metainfo, args.kpt_thr)):
            raise DemoError(f'{out}: cannot write the image')
        print(f'{path}: {len(people)} person(s) -> {out}')
        if args.json:
            write_json(os.path.splitext(out)[0] + '.json', {
                'image': path, 'width': image.shape[1], 'height': image.shape[0],
                'keypoint_names': list(estimator.metainfo.joint_names), 'people': people_json(people)})


# ---------------------------------------------------------------------------------------------
# Video and camera
def open_source(args: argparse.Namespace) -> tuple[FrameReader, str]:
    """The frames of --video FILE or --camera INDEX, and the source's name ('clip.mp4', 'camera0')."""
    if args.video is not None:
        if not os.path.isfile(args.video):
            raise DemoError(f'--video {args.video}: no such file')
        capture, name = cv2.VideoCapture(args.video), args.video
    else:
        capture, name = cv2.VideoCapture(args.camera), f'camera{args.camera}'
    if not capture.isOpened():
        capture.release()
        raise DemoError(f'--video {args.video}: not a readable video' if args.video is not None
                        else f'--camera {args.camera}: cannot open this camera')
    return FrameReader(capture, live=args.video is None), name


class VideoOutputs:
    """<name>_pose.mp4 (the drawn frames, the source's fps and size), <name>_pose.jsonl (a line per frame)
    and, with --json, <name>_pose.json (every frame in one document)."""

    def __init__(self, args: argparse.Namespace, name: str, fps: float, header: dict) -> None:
        self.video_path = output_path(args, name, '.mp4')
        self.jsonl_path = output_path(args, name, '.jsonl')
        self.json_path = output_path(args, name, '.json') if args.json else None
        self.fps, self.header = fps, header
        self.writer, self.count = None, 0
        try:
            self.jsonl = open(self.jsonl_path, 'w')
        except OSError as err:
            raise DemoError(f'{self.jsonl_path}: cannot write: {err.strerror}') from None

    def write(self, canvas: np.ndarray, record: dict) -> None:
        if self.writer is None:  # the size is the first frame's
            self.writer = cv2.VideoWriter(self.video_path, cv2.VideoWriter_fourcc(*'mp4v'), self.fps,
                                          (canvas.shape[1], canvas.shape[0]))
            if not self.writer.isOpened():
                raise DemoError(f'{self.video_path}: cannot open a video writer (mp4v)')
        self.writer.write(canvas)
        self.jsonl.write(json.dumps(record) + '\n')
        self.count += 1

    def close(self) -> None:
        if self.writer is not None:
            self.writer.release()
        self.jsonl.close()
        if self.json_path:  # built from the .jsonl: a long --camera run keeps no frame records in memory
            with open(self.jsonl_path) as f:
                frames = [json.loads(line) for line in f]
            write_json(self.json_path, {**self.header, 'fps': self.fps, 'frames': frames})


class Display:
    """The --show window, when there is a display to show it on (else one warning, and no window)."""

    def __init__(self, wanted: bool) -> None:
        self.on = wanted and self._display_available()

    @staticmethod
    def _display_available() -> bool:
        if sys.platform.startswith('linux') and not (os.environ.get('DISPLAY') or os.environ.get('WAYLAND_DISPLAY')):
            logger.warning('--show: no display (DISPLAY and WAYLAND_DISPLAY are unset); continuing without a window')
            return False
        return True

    def show(self, image: np.ndarray) -> bool:
        """Show a frame; False when the user pressed q or Esc."""
        if not self.on:
            return True
        try:
            cv2.imshow('Lite-HRNet demo', image)
            key = cv2.waitKey(1) & 0xFF
        except cv2.error as err:  # opencv-python-headless has no GUI
            logger.warning('--show: OpenCV cannot open a window (%s); continuing without one',
                           str(err).strip().splitlines()[-1])
            self.on = False
            return True
        return key not in (ord('q'), 27)

    def close(self) -> None:
        if self.on:
            cv2.destroyAllWindows()


def build_runner(estimator: PoseEstimator, args: argparse.Namespace, boxes_for: BoxSource) -> VideoPoseRunner:
    smoothing = (dict(min_cutoff=args.smooth_min_cutoff, beta=args.smooth_beta, d_cutoff=args.smooth_d_cutoff)
                 if args.smooth else None)
    tracker = PoseTracker(estimator.metainfo.sigmas, kpt_thr=args.kpt_thr, max_missed=args.track_max_missed,
                          smoothing=smoothing)
    return VideoPoseRunner(estimator.predict, boxes_for, tracker, det_interval=args.det_interval)


def run_stream(estimator: PoseEstimator, args: argparse.Namespace, boxes_for: BoxSource, reader: FrameReader,
               name: str) -> None:
    """Pose on every decodable frame of a video or camera; writes the outputs as it goes."""
    header = {'video': args.video} if args.video is not None else {'camera': args.camera}
    outputs = VideoOutputs(args, name, reader.fps, {**header, 'keypoint_names': list(estimator.metainfo.joint_names)})
    runner, display = build_runner(estimator, args, boxes_for), Display(args.show)
    total = reader.frame_count and min(reader.frame_count, args.max_frames or reader.frame_count)
    progress = tqdm(total=total, unit='frame', desc=os.path.basename(name), disable=total is None)
    try:
        process_frames(estimator, args, reader, runner, outputs, display, progress)
    except KeyboardInterrupt:
        print(f'{name}: stopped')
    finally:
        progress.close()
        outputs.close()
        display.close()
    if outputs.count == 0:
        raise DemoError(f'{name}: no frame could be decoded')
    report(name, outputs, reader)


def process_frames(estimator: PoseEstimator, args: argparse.Namespace, reader: FrameReader,
                   runner: VideoPoseRunner, outputs: VideoOutputs, display: Display, progress) -> None:
    """The frame loop: boxes, pose, ids, drawing (with the running FPS), outputs, window."""
    pose_rate, total_rate = RunningRate(), RunningRate()
    last = time.perf_counter()
    for index, t, frame in reader:
        people = runner(frame, index, t)
        if people:
            pose_rate.add(runner.times['pose'])
        canvas = draw_fps(draw_people(frame, people, estimator.metainfo, args.kpt_thr),
                          pose_rate.rate, total_rate.rate)
        outputs.write(canvas, frame_record(index, t, people))
        progress.update(1)
        now = time.perf_counter()
        total_rate.add(now - last)  # decode + boxes + pose + tracking + drawing + writing
        last = now
        if not display.show(canvas) or outputs.count == args.max_frames:
            break


def report(name: str, outputs: VideoOutputs, reader: FrameReader) -> None:
    written = [outputs.video_path, outputs.jsonl_path] + ([outputs.json_path] if outputs.json_path else [])
    print(f'{name}: {outputs.count} frame(s) -> {", ".join(written)}')
    if reader.skipped:
        print(f'{name}: {reader.skipped} frame(s) could not be decoded and were skipped')
    if reader.unread_at_end:
        print(f'{name}: the last {reader.unread_at_end} frame(s) the file lists could not be read')


def estimator_options(args: argparse.Namespace) -> dict:
    """--backend / --precision / --threads as PoseEstimator keyword arguments, only when given."""
    return {k: v for k, v in (('backend', args.backend), ('precision', args.precision), ('threads', args.threads))
            if v is not None}


def run(args: argparse.Namespace) -> None:
    cfg = load_config(args.cfg, args.opts)
    boxes_for = BoxSource(args)  # reads --det-file / --ann-file / --det-model before the model is built
    source = open_source(args) if args.image is None else None  # and opens the video or camera
    if args.threads:
        torch.set_num_threads(args.threads)  # the torch backend's; onnxruntime and openvino get `threads`
    try:
        # TEST.MODEL_FILE (a warning when it is empty: random weights); BN folded: same output, faster.
        estimator = PoseEstimator(cfg, fold_bn=True, **estimator_options(args))
        os.makedirs(args.output, exist_ok=True)
        if source is None:
            run_images(estimator, args, boxes_for)
        else:
            run_stream(estimator, args, boxes_for, *source)
    finally:
        if source is not None:
            source[0].release()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(levelname)s: %(message)s')
    try:
        run(args)
    except (DemoError, ConfigError, CheckpointError, UserError, KeyError, ValueError) as err:
        print(f'error: {err}', file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())
