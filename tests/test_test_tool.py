"""tools/test.py on the tiny real COCO fixture: GT and detector boxes, our and official checkpoint formats,
results file and metrics.json, and clear errors for bad input."""
import json
import os
import subprocess
import sys

import pytest
import torch

from conftest import REPO_ROOT, load_tool
from lib.config import load_config, output_dirs
from lib.evaluation import STAT_NAMES
from lib.models import build_model
from lib.utils.training_state import save_model_file

CFG = os.path.join(REPO_ROOT, 'experiments', 'coco', 'lite_hrnet', 'lite_hrnet_18_256x192.yaml')
RESULTS = 'keypoints_val2017_results.json'


def opts(coco_tiny: str, out: str, model_file: str, **extra) -> list[str]:
    values = {'DATASET.ROOT': coco_tiny, 'OUTPUT_DIR': out, 'LOG_DIR': os.path.join(out, 'log'),
              'MODEL.IMAGE_SIZE': '[64,64]', 'MODEL.HEATMAP_SIZE': '[16,16]', 'WORKERS': '0',
              'TEST.BATCH_SIZE_PER_GPU': '32', 'TEST.MODEL_FILE': model_file}
    values.update(extra)
    return [item for pair in values.items() for item in pair]


@pytest.fixture(scope='module')
def weights(tmp_path_factory):
    """A randomly initialised Lite-HRNet-18 saved in our format and in the official mmpose format."""
    folder = tmp_path_factory.mktemp('weights')
    cfg = load_config(CFG, ['MODEL.IMAGE_SIZE', '[64,64]', 'MODEL.HEATMAP_SIZE', '[16,16]', 'MODEL.INIT', 'kaiming'])
    torch.manual_seed(0)
    model = build_model(cfg)
    ours, official = str(folder / 'ours.pth'), str(folder / 'official.pth')
    save_model_file(ours, model, cfg)
    torch.save({'meta': {'mmpose_version': '0.13.0'}, 'state_dict': model.state_dict()}, official)
    return ours, official


def run_test(coco_tiny, out, model_file, **extra) -> tuple[dict, list]:
    assert load_tool('test').main(['--cfg', CFG, '--device', 'cpu', *opts(coco_tiny, out, model_file, **extra)]) == 0
    folder = output_dirs(load_config(CFG, ['OUTPUT_DIR', out]))[0]
    with open(os.path.join(folder, 'metrics.json')) as f:
        metrics = json.load(f)
    with open(os.path.join(folder, RESULTS)) as f:
        results = json.load(f)
    return metrics, results


@pytest.mark.slow
@pytest.mark.parametrize('use_gt_bbox, boxes', [('True', 12), ('False', 118)])
def test_one_result_per_kept_box(coco_tiny, weights, tmp_path, capsys, use_gt_bbox, boxes):
    # OKS NMS keeps a box unless its overlap exceeds the threshold; at 1.0 nothing is suppressed, so every
    # box (12 annotated people, or the fixture's 118 detections) must give exactly one result.
    metrics, results = run_test(coco_tiny, str(tmp_path / 'all'), weights[0],
                                **{'TEST.USE_GT_BBOX': use_gt_bbox, 'TEST.OKS_THRE': '1.0'})
    assert len(results) == boxes
    assert all(len(r['keypoints']) == 17 * 3 and r['category_id'] == 1 for r in results)
    assert list(metrics) == list(STAT_NAMES)
    table = capsys.readouterr().out
    assert '| Model | AP |' in table
    # The official threshold (0.9) can only remove boxes, never add them.
    _, kept = run_test(coco_tiny, str(tmp_path / 'nms'), weights[0], **{'TEST.USE_GT_BBOX': use_gt_bbox})
    assert 0 < len(kept) <= boxes
    assert {r['image_id'] for r in kept} == {r['image_id'] for r in results}


def test_official_checkpoint_gives_the_same_metrics(coco_tiny, weights, tmp_path):
    extra = {'TEST.USE_GT_BBOX': 'True', 'TEST.FLIP_TEST': 'False'}
    ours, _ = run_test(coco_tiny, str(tmp_path / 'ours'), weights[0], **extra)
    official, _ = run_test(coco_tiny, str(tmp_path / 'official'), weights[1], **extra)
    assert ours == official


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS='1')
    return subprocess.run([sys.executable, os.path.join(REPO_ROOT, 'tools', 'test.py'), *args],
                          capture_output=True, text=True, env=env, timeout=300)


def test_bad_inputs_fail_clearly(coco_tiny, weights, tmp_path, capsys):
    done = run_cli('--cfg', str(tmp_path / 'missing.yaml'))
    assert done.returncode != 0 and 'config file not found' in done.stderr and 'Traceback' not in done.stderr

    tool = load_tool('test')

    def error_of(*argv) -> str:
        assert tool.run_tool(lambda: tool.main(['--cfg', CFG, '--device', 'cpu', *argv])) == 2  # bad input
        return capsys.readouterr().err

    assert 'weights file not found' in error_of(*opts(coco_tiny, str(tmp_path), str(tmp_path / 'nope.pth')))
    assert 'TEST.MODEL_FILE' in error_of(*opts(coco_tiny, str(tmp_path), ''))
    # Lite-HRNet-30 weights into a Lite-HRNet-18 config: the message names the file and the mismatched keys.
    cfg30 = load_config(CFG, ['MODEL.NAME', 'litehrnet_30'])
    path30 = str(tmp_path / 'lhr30.pth')
    save_model_file(path30, build_model(cfg30), cfg30)
    message = error_of(*opts(coco_tiny, str(tmp_path), path30))
    assert 'lhr30.pth does not fit the model' in message and 'unexpected keys' in message


def test_an_empty_detections_file_scores_zero_predictions(coco_tiny, weights, tmp_path):
    """A detector that found nobody (`[]`): no KeyError; an empty results file and metrics of 0."""
    dets = tmp_path / 'no_people.json'
    dets.write_text('[]')
    metrics, results = run_test(coco_tiny, str(tmp_path / 'out'), weights[0],
                                **{'TEST.USE_GT_BBOX': 'False', 'TEST.COCO_BBOX_FILE': str(dets)})
    assert results == []
    assert metrics['AP'] == 0.0


def test_a_weights_file_holding_a_tensor_is_named(coco_tiny, tmp_path, capsys):
    path = tmp_path / 'tensor.pth'
    torch.save(torch.zeros(2), path)
    tool = load_tool('test')
    assert tool.run_tool(lambda: tool.main(['--cfg', CFG, '--device', 'cpu',
                                            *opts(coco_tiny, str(tmp_path), str(path))])) == 2
    assert capsys.readouterr().err.startswith(f'error: {path}: no state dict found: it holds a Tensor of shape (2,)')


def test_a_results_file_that_cannot_be_written_is_named(coco_tiny, weights, tmp_path, capsys):
    """metrics.json cannot be created (a folder is in the way, which fails for root too): one line, exit 2."""
    out = str(tmp_path)
    metrics_json = os.path.join(output_dirs(load_config(CFG, ['OUTPUT_DIR', out]))[0], 'metrics.json')
    os.makedirs(metrics_json)
    tool = load_tool('test')
    argv = ['--cfg', CFG, '--device', 'cpu', *opts(coco_tiny, out, weights[0], **{'TEST.USE_GT_BBOX': 'True'})]
    assert tool.run_tool(lambda: tool.main(argv)) == 2
    assert capsys.readouterr().err == f'error: {metrics_json}: Is a directory\n'
