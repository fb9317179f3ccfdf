"""demo/demo.py end to end: boxes from a COCO detections file, drawn joints, keypoint JSON, video, errors.

The network is the official-format reference checkpoint in tests/data/reference (seeded random weights, not
trained), at a small input size: these tests check the plumbing (which boxes, where the drawing
lands, what the JSON holds), not pose quality.
"""
from __future__ import annotations

import json
import os

import cv2
import numpy as np
import pytest

from conftest import load_script
from lib.dataset.transforms import box_to_center_scale

pytestmark = pytest.mark.usefixtures('single_thread')
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CFG = os.path.join(REPO_ROOT, 'experiments', 'coco', 'lite_hrnet', 'lite_hrnet_18_256x192.yaml')
SMALL = ['MODEL.IMAGE_SIZE', '[96,128]', 'MODEL.HEATMAP_SIZE', '[24,32]']
IMAGE_ID = 40083


def demo_main(argv: list[str]) -> int:
    return load_script('demo', 'demo').main(argv)


@pytest.fixture
def weights(reference_dir) -> str:
    return os.path.join(reference_dir, 'litehrnet_18_coco_256x192.pth')


def test_demo_draws_detected_people_and_writes_keypoints(coco_tiny, weights, tmp_path) -> None:
    # A lossless copy of a real image keeps its numeric name (-> image id 40083) so drawn pixels compare exactly.
    src = cv2.imread(os.path.join(coco_tiny, 'images', 'val2017', f'{IMAGE_ID:012d}.jpg'))
    image_path = tmp_path / f'{IMAGE_ID:012d}.png'
    cv2.imwrite(str(image_path), src)
    det_file = os.path.join(coco_tiny, 'person_detection_results', 'COCO_val2017_detections_AP_H_56_person.json')
    out_dir = tmp_path / 'out'

    status = demo_main(['--cfg', CFG, 'TEST.MODEL_FILE', weights, '--image', str(image_path), '--det-file', det_file,
                        '--det-thr', '0.5', '--kpt-thr', '0.0', '--json', '--output', str(out_dir), *SMALL])

    assert status == 0
    with open(det_file) as f:
        expected_boxes = [d['bbox'] for d in json.load(f) if d['image_id'] == IMAGE_ID and d['score'] >= 0.5]
    with open(out_dir / f'{IMAGE_ID:012d}_pose.json') as f:
        result = json.load(f)
    assert len(expected_boxes) >= 2
    np.testing.assert_allclose([p['box'] for p in result['people']], expected_boxes, atol=0.01)
    assert all(len(p['keypoints']) == 17 and all(len(k) == 3 for k in p['keypoints']) for p in result['people'])
    assert len(result['keypoint_names']) == 17 and (result['width'], result['height']) == (src.shape[1], src.shape[0])

    drawn = cv2.imread(str(out_dir / f'{IMAGE_ID:012d}_pose.png'))
    assert drawn.shape == src.shape
    joints = [(x, y) for p in result['people'] for x, y, s in p['keypoints'] if s > 0.0]
    inside = [(int(round(x)), int(round(y))) for x, y in joints
              if 1 <= round(x) < src.shape[1] - 1 and 1 <= round(y) < src.shape[0] - 1]
    assert len(inside) >= 10
    for x, y in inside:  # every drawn joint changed the pixels under it (3x3 window, any channel)
        window = (slice(y - 1, y + 2), slice(x - 1, x + 2))
        assert np.any(drawn[window] != src[window]), (x, y)
    # ... while pixels outside every person's crop region (where its joints and limbs must lie) are untouched.
    untouched = np.ones(src.shape[:2], bool)
    for box in expected_boxes:
        center, scale = box_to_center_scale(box, 96 / 128)
        x0, y0 = (center - scale * 100 - 10).astype(int)
        x1, y1 = (center + scale * 100 + 10).astype(int)
        untouched[max(0, y0):max(0, y1), max(0, x0):max(0, x1)] = False
    assert untouched.sum() > 1000
    np.testing.assert_array_equal(drawn[untouched], src[untouched])


def test_demo_video_whole_frame(weights, tmp_path) -> None:
    video = tmp_path / 'clip.mp4'
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*'mp4v'), 10, (160, 120))
    if not writer.isOpened():
        pytest.skip('this OpenCV build cannot write mp4v video')
    rng = np.random.default_rng(0)
    for _ in range(3):
        writer.write(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8))
    writer.release()
    status = demo_main(['--cfg', CFG, 'TEST.MODEL_FILE', weights, '--video', str(video), '--json',
                        '--output', str(tmp_path / 'out'), 'TEST.FLIP_TEST', 'False', *SMALL])
    assert status == 0
    with open(tmp_path / 'out' / 'clip_pose.json') as f:
        result = json.load(f)
    assert [fr['frame'] for fr in result['frames']] == [0, 1, 2]
    assert all(fr['people'][0]['box'] == [0, 0, 160, 120] for fr in result['frames'])  # no boxes: whole frame
    capture = cv2.VideoCapture(str(tmp_path / 'out' / 'clip_pose.mp4'))
    assert capture.isOpened() and int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 3
    capture.release()


def test_demo_errors_are_clear(tmp_path, capsys, caplog) -> None:
    missing = tmp_path / 'nope.jpg'
    assert demo_main(['--cfg', CFG, '--image', str(missing)]) == 2
    err = capsys.readouterr().err
    assert 'nope.jpg' in err and 'no such file' in err and 'Traceback' not in err

    broken = tmp_path / 'broken.jpg'
    broken.write_text('not an image')
    assert demo_main(['--cfg', CFG, '--image', str(broken), *SMALL]) == 2
    assert 'broken.jpg: not a readable image' in capsys.readouterr().err
    assert 'RANDOM weights' in caplog.text  # TEST.MODEL_FILE is empty in the YAML

    dets = tmp_path / 'dets.json'
    dets.write_text('[{"image_id": 1, "bbox": [0, 0, 10], "score": 0.9}]')
    assert demo_main(['--cfg', CFG, '--image', str(broken), '--det-file', str(dets)]) == 2
    assert 'entry 0 bbox must have 4 numbers' in capsys.readouterr().err

    named = tmp_path / 'holiday.png'
    cv2.imwrite(str(named), np.zeros((40, 30, 3), np.uint8))
    dets.write_text('[]')
    assert demo_main(['--cfg', CFG, '--image', str(named), '--det-file', str(dets), *SMALL]) == 2
    assert 'holiday.png: cannot match this image' in capsys.readouterr().err


def test_demo_warns_about_a_box_outside_the_image_and_scores_above_one(weights, tmp_path, caplog, capsys) -> None:
    image = tmp_path / '000000000007.png'  # a numeric name: the detections' image_id 7
    cv2.imwrite(str(image), np.full((60, 80, 3), 120, np.uint8))
    dets = tmp_path / 'dets.json'
    dets.write_text('[{"image_id": 7, "bbox": [1, 1, 20, 30], "score": 1.5},'
                    ' {"image_id": 7, "bbox": [1, 1, 20, 30], "score": 3}]')
    args = ['--cfg', CFG, 'TEST.MODEL_FILE', weights, '--image', str(image), '--output', str(tmp_path / 'out'),
            '--det-file', str(dets), '--bbox', '500,10,40,40', '--bbox', '10,10,20,20', 'TEST.FLIP_TEST', 'False',
            *SMALL]
    assert demo_main(args) == 0  # warnings, not errors: the keypoints are still written
    warnings = [r.getMessage() for r in caplog.records if r.levelname == 'WARNING' and r.name == 'demo']
    assert warnings == [f'--det-file {dets}: 2 detection score(s) above 1; --det-thr 0.5 expects scores in [0, 1]',
                        '--bbox 500,10,40,40 lies outside the 80x60 image: its keypoints will be meaningless']

    dets.write_text('[{"image_id": 7, "bbox": [1, 1, 20, 30], "score": 0.9},'
                    ' {"image_id": 7, "bbox": [1, 1, 20, 30], "score": NaN}]')
    assert demo_main(['--cfg', CFG, '--image', str(image), '--det-file', str(dets)]) == 2
    err = capsys.readouterr().err
    assert f'--det-file {dets}: entry 1 has a NaN or infinite score or bbox' in err and err.count('\n') == 1
