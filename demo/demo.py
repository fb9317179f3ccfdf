"""Run Lite-HRNet on your images or a video and draw the skeletons.

    python demo/demo.py --cfg experiments/coco/lite_hrnet/lite_hrnet_18_256x192.yaml \\
        TEST.MODEL_FILE litehrnet_18_coco_256x192.pth --image photo.jpg --json

Person boxes come from, in this order of preference:
  --bbox x,y,w,h (repeatable)      the same boxes for every image / frame;
  --det-file dets.json             COCO-format detections [{image_id, bbox, score, category_id}],
                                   kept when score >= --det-thr and category_id is 1 (person) or absent.
                                   An image is matched to its image_id by --ann-file (a COCO annotation
                                   file: images[].file_name -> id) or else by its numeric file name
                                   (000000000785.jpg -> 785); a video frame's image_id is its index (0-based);
  nothing                          the whole image is one person box.
Outputs go to --output (default output/demo): <name>_pose.<ext> with the skeletons drawn (joints
below --kpt-thr are left out), and with --json <name>_pose.json holding every person's box, box
score and K keypoints [x, y, score] in image pixels. Warnings: a --bbox with no pixel inside the image
(its keypoints mean nothing), detection scores above 1 (--det-thr expects [0, 1]); a NaN score or box
in --det-file is an error.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys

import _init_paths  # noqa: F401  (puts the repository root on sys.path)
import cv2
import numpy as np

from lib.config import ConfigError, load_config
from lib.core.inference import PoseEstimator
from lib.utils.checkpoint import CheckpointError
from lib.utils.cli import parse_args_with_overrides
from lib.utils.vis import draw_skeleton

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp')
logger = logging.getLogger('demo')
BOX_COLOR = (200, 200, 200)  # BGR, light grey: visible on most backgrounds, distinct from the limbs


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


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--cfg', required=True, help='experiment YAML file')
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument('--image', help='an image file or a folder of images')
    source.add_argument('--video', help='a video file')
    parser.add_argument('--output', default=os.path.join('output', 'demo'), help='output folder')
    parser.add_argument('--bbox', type=parse_box, action='append', default=[], help='person box x,y,w,h')
    parser.add_argument('--det-file', default='', help='COCO-format person detections (JSON list)')
    parser.add_argument('--det-thr', type=float, default=0.5, help='detection score threshold')
    parser.add_argument('--ann-file', default='', help='COCO annotation file mapping file names to image ids')
    parser.add_argument('--kpt-thr', type=float, default=0.3, help='joints with a lower score are not drawn')
    parser.add_argument('--json', action='store_true', help='also write the keypoints as JSON')
    parser.add_argument('--max-frames', type=int, default=0, help='video: stop after this many frames (0 = all)')
    return parse_args_with_overrides(parser, argv)


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


class BoxSource:
    """Boxes and scores for a frame: --bbox, else detections of its image id, else the whole frame."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.fixed = np.array(args.bbox, dtype=np.float64).reshape(-1, 4)
        self.dets = load_detections(args.det_file, args.det_thr) if args.det_file else None
        self.name_to_id = load_image_ids(args.ann_file) if args.ann_file else {}
        self._warned: set[tuple] = set()  # (box, image size) pairs already reported

    def __call__(self, image: np.ndarray, image_id: int | None) -> tuple[np.ndarray, np.ndarray]:
        if len(self.fixed):
            self.warn_outside(self.fixed, image.shape[1], image.shape[0])
            return self.fixed, np.ones(len(self.fixed))
        if self.dets is not None:
            found = self.dets.get(image_id, [])
            return (np.array([b for b, _ in found], dtype=np.float64).reshape(-1, 4),
                    np.array([s for _, s in found], dtype=np.float64))
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
# Drawing and output
def draw_people(image: np.ndarray, people: list[dict], metainfo, kpt_thr: float) -> np.ndarray:
    """A copy of the image with every person's box and skeleton (joints scoring >= kpt_thr) drawn."""
    canvas = image.copy()
    for person in people:
        x, y, w, h = (int(round(v)) for v in person['box'])
        cv2.rectangle(canvas, (x, y), (x + w, y + h), BOX_COLOR, 1, cv2.LINE_AA)
        canvas = draw_skeleton(canvas, person['keypoints'], metainfo, score_thr=kpt_thr)
    return canvas


def people_json(people: list[dict]) -> list[dict]:
    return [{'box': [round(float(v), 2) for v in p['box']], 'box_score': round(p['score'], 5),
             'keypoints': [[round(float(x), 2), round(float(y), 2), round(float(s), 5)]
                           for x, y, s in p['keypoints']]} for p in people]


def write_json(path: str, data: dict) -> None:
    with open(path, 'w') as f:
        json.dump(data, f, indent=1)


def output_path(args: argparse.Namespace, source: str, ext: str | None = None) -> str:
    stem, src_ext = os.path.splitext(os.path.basename(source))
    return os.path.join(args.output, f'{stem}_pose{ext or src_ext}')


# ---------------------------------------------------------------------------------------------
# Images and video
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


def run_video(estimator: PoseEstimator, args: argparse.Namespace, boxes_for: BoxSource) -> None:
    if not os.path.isfile(args.video):
        raise DemoError(f'--video {args.video}: no such file')
    capture = cv2.VideoCapture(args.video)
    ok, frame = capture.read()
    if not capture.isOpened() or not ok:
        raise DemoError(f'--video {args.video}: not a readable video')
    fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
    out = output_path(args, args.video, '.mp4')
    writer = cv2.VideoWriter(out, cv2.VideoWriter_fourcc(*'mp4v'), fps, (frame.shape[1], frame.shape[0]))
    if not writer.isOpened():
        raise DemoError(f'{out}: cannot open a video writer (mp4v)')
    frames, index = [], 0
    try:
        while ok and (args.max_frames <= 0 or index < args.max_frames):
            boxes, scores = boxes_for(frame, index)
            people = estimator.predict(frame, boxes, scores)
            writer.write(draw_people(frame, people, estimator.metainfo, args.kpt_thr))
            frames.append({'frame': index, 'people': people_json(people)})
            index += 1
            ok, frame = capture.read()
    finally:
        writer.release()
        capture.release()
    print(f'{args.video}: {index} frame(s) -> {out}')
    if args.json:
        write_json(os.path.splitext(out)[0] + '.json', {
            'video': args.video, 'fps': fps, 'keypoint_names': list(estimator.metainfo.joint_names),
            'frames': frames})


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(levelname)s: %(message)s')
    try:
        cfg = load_config(args.cfg, args.opts)
        boxes_for = BoxSource(args)  # reads --det-file / --ann-file before the model is built
        # TEST.MODEL_FILE (a warning when it is empty: random weights); BN folded: same output, faster.
        estimator = PoseEstimator(cfg, fold_bn=True)
        os.makedirs(args.output, exist_ok=True)
        if args.video:
            run_video(estimator, args, boxes_for)
        else:
            run_images(estimator, args, boxes_for)
    except (DemoError, ConfigError, CheckpointError, KeyError, ValueError) as err:
        print(f'error: {err}', file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())
