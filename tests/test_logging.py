"""create_logger: every `lib` module's lines reach the console and the log file once; an output folder that
cannot be written is one 'error:' line (exit 2) before any work; errors raised in a DataLoader worker
reach the user as one line."""
import glob
import logging
import os

import cv2
import numpy as np
import pytest
from torch.utils.data import DataLoader

from conftest import REPO_ROOT, load_tool
from lib.config import load_config, output_dirs
from lib.dataset import build_dataset
from lib.utils.logger import create_logger, run_tool

CFG = os.path.join(REPO_ROOT, 'experiments', 'synthetic', 'quickstart.yaml')


@pytest.fixture(autouse=True)
def _detach_handlers():
    """Leave no handler of ours on 'lib'/'litehrnet' pointing at this test's captured stdout or tmp_path."""
    yield
    for name in ('lib', 'litehrnet'):
        logger = logging.getLogger(name)
        for handler in [h for h in logger.handlers if getattr(h, '_litehrnet', False)]:
            logger.removeHandler(handler)
            handler.close()


def _train_opts(root: str, out: str, **extra) -> list[str]:
    opts = {'DATASET.ROOT': root, 'OUTPUT_DIR': os.path.join(out, 'output'), 'LOG_DIR': os.path.join(out, 'log'),
            'MODEL.IMAGE_SIZE': '[64,64]', 'MODEL.HEATMAP_SIZE': '[16,16]', 'WORKERS': '0',
            'TRAIN.BATCH_SIZE_PER_GPU': '4', 'TEST.BATCH_SIZE_PER_GPU': '8', 'TRAIN.MAX_ITERS_PER_EPOCH': '1',
            'TRAIN.END_EPOCH': '1', 'TEST.FLIP_TEST': 'False'}  # one step, one validation
    opts.update(extra)
    return [item for pair in opts.items() for item in pair]


def test_dataset_lines_reach_console_and_log_file_once(synthetic_tiny, tmp_path, capsys):
    tool = load_tool('train')
    argv = ['--cfg', CFG, '--device', 'cpu', *_train_opts(synthetic_tiny, str(tmp_path))]
    assert tool.run_tool(lambda: tool.main(argv)) == 0
    console = capsys.readouterr().out.splitlines()
    output_dir = output_dirs(load_config(CFG, ['OUTPUT_DIR', str(tmp_path / 'output')]))[0]
    (log_file,) = glob.glob(os.path.join(output_dir, '*_train_*.log'))
    with open(log_file) as f:
        logged = f.read().splitlines()

    def counts(lines):
        return [line.split(' INFO ', 1)[1] for line in lines if 'person records' in line]

    # lib.dataset.coco logs one line per data set build (train and val), each once in each place.
    in_file = counts(logged)
    assert len(in_file) == 2 and counts(console) == in_file, (in_file, counts(console))
    assert in_file[0].startswith('coco train2017 (GT boxes, 6 images): kept ')
    assert any('finished: best' in line for line in logged)  # the tool's own logger, same file


def test_every_lib_logger_is_routed_once(tmp_path, capsys):
    cfg = load_config(CFG, ['OUTPUT_DIR', str(tmp_path / 'out'), 'LOG_DIR', str(tmp_path / 'log')])
    create_logger(cfg, 'test')
    logger, output_dir, _ = create_logger(cfg, 'test')
    logging.getLogger('lib.evaluation.coco_keypoints').info('wrote 3 keypoint results to r.json')
    logging.getLogger('lib.dataset.coco').warning('a dataset warning')
    logger.info('tool line')
    console = capsys.readouterr().out
    with open(sorted(glob.glob(os.path.join(output_dir, '*_test_*.log')))[-1]) as f:
        text = f.read()
    for line in ('wrote 3 keypoint results to r.json', 'WARNING a dataset warning', 'tool line'):
        assert console.count(line) == 1 and text.count(line) == 1, line


def test_unwritable_output_folder_is_one_error_line(synthetic_tiny, tmp_path, capsys, monkeypatch):
    blocker = tmp_path / 'a_file'
    blocker.write_text('not a folder')
    tool = load_tool('train')
    argv = ['--cfg', CFG, '--device', 'cpu', *_train_opts(synthetic_tiny, str(tmp_path)),
            'OUTPUT_DIR', str(blocker / 'output')]
    assert tool.run_tool(lambda: tool.main(argv)) == 2  # before any model or data set is built
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and err.startswith(f'error: {blocker}') and 'Not a directory' in err, err
    cfg = load_config(CFG, ['OUTPUT_DIR', str(blocker / 'output'), 'LOG_DIR', str(tmp_path / 'log')])
    assert run_tool(lambda: create_logger(cfg, 'train')) == 2
    assert capsys.readouterr().err == f'error: {output_dirs(cfg)[0]}: not writable (Not a directory)\n'

    # A folder without write permission (root ignores permission bits, so the OS error is simulated there).
    cfg = load_config(CFG, ['OUTPUT_DIR', str(tmp_path / 'ro' / 'output'), 'LOG_DIR', str(tmp_path / 'log')])
    output_dir = output_dirs(cfg)[0]
    if os.geteuid() == 0:
        def makedirs(path, *args, **kwargs):
            raise PermissionError(13, 'Permission denied', path)
        monkeypatch.setattr(os, 'makedirs', makedirs)
    else:
        (tmp_path / 'ro').mkdir(mode=0o500)
    assert run_tool(lambda: create_logger(cfg, 'train')) == 2
    assert capsys.readouterr().err == f'error: {output_dir}: not writable (Permission denied)\n'


def test_image_error_in_a_loader_worker_is_one_line(synthetic_tiny, tmp_path, capsys):
    """A truncated JPEG decodes with a grey bottom half; it must stop the run, and the worker's error
    must arrive as one line naming the file and the sample, not as a wrapped traceback."""
    root = tmp_path / 'data'
    os.makedirs(root / 'images' / 'val2017')
    os.symlink(os.path.join(synthetic_tiny, 'annotations'), root / 'annotations')
    for name in os.listdir(os.path.join(synthetic_tiny, 'images', 'val2017')):
        os.symlink(os.path.join(synthetic_tiny, 'images', 'val2017', name), root / 'images' / 'val2017' / name)
    cfg = load_config(CFG, ['DATASET.ROOT', str(root), 'MODEL.IMAGE_SIZE', '[64,64]',
                            'MODEL.HEATMAP_SIZE', '[16,16]', 'TEST.USE_GT_BBOX', 'True'])
    dataset = build_dataset(cfg, is_train=False)
    path = dataset.db[0]['image_file']
    with open(path, 'rb') as f:
        data = f.read()
    os.remove(path)  # the symlink: write the bad copy in tmp_path, not over the session fixture
    with open(path, 'wb') as f:
        f.write(data[: len(data) * 2 // 3])
    assert cv2.imread(path) is not None  # OpenCV alone would not notice

    def main():
        for _ in DataLoader(dataset, batch_size=1, num_workers=1):
            pass
        return 0

    assert run_tool(main) == 2
    err = capsys.readouterr().err
    assert err == f'error: {path} (sample 0): truncated JPEG (the file does not end with the end-of-image ' \
                  f'marker FF D9; {len(data) * 2 // 3} bytes): copy or download it again\n'
    np.testing.assert_equal(len(err.splitlines()), 1)
