"""tools/evaluate.py end to end: --out keys and values, input formats, and one-line errors for bad input."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from scipy.io import savemat

from conftest import COCO_TINY, MPII_TINY, REPO_ROOT, load_tool

TOOL = os.path.join(REPO_ROOT, 'tools', 'evaluate.py')
COCO_KEYS = ['AP', 'AP50', 'AP75', 'APm', 'APl', 'AR', 'AR50', 'AR75', 'ARm', 'ARl']
MPII_KEYS = ['Head', 'Shoulder', 'Elbow', 'Wrist', 'Hip', 'Knee', 'Ankle', 'Mean', 'Mean@0.1']


@pytest.fixture(scope='module')
def tool():
    """The tool imported in-process (its main() returns the exit code)."""
    return load_tool('evaluate')


@pytest.fixture
def coco_ann():
    return os.path.join(COCO_TINY, 'annotations', 'person_keypoints_val2017.json')


@pytest.fixture
def gt_mat():
    return os.path.join(MPII_TINY, 'annot', 'gt_valid_synthetic_headboxes.mat')


def gt_results(ann_file, noise=0.0, seed=0):
    """COCO results made from the annotated persons (optionally with pixel noise and random scores)."""
    rng = np.random.default_rng(seed)
    with open(ann_file) as f:
        anns = [a for a in json.load(f)['annotations'] if a['num_keypoints'] > 0]
    results = []
    for a in anns:
        k = np.array(a['keypoints'], dtype=np.float64).reshape(-1, 3)
        k[:, :2] += rng.normal(0, noise, k[:, :2].shape) if noise else 0.0
        k[:, 2] = rng.uniform(0.05, 1.0, len(k)) if noise else 1.0
        results.append({'image_id': a['image_id'], 'category_id': 1, 'keypoints': k.reshape(-1).tolist(),
                        'score': float(rng.uniform(0.2, 1.0)) if noise else 1.0, 'bbox': a['bbox']})
    return results


def write_json(path, obj):
    path.write_text(json.dumps(obj))
    return str(path)


def test_coco_ground_truth_out_json(tool, coco_ann, tmp_path, capsys):
    res = write_json(tmp_path / 'res.json', gt_results(coco_ann))
    out = tmp_path / 'sub' / 'stats.json'
    assert tool.main(['coco', '--ann-file', coco_ann, '--results', res, '--out', str(out)]) == 0
    stats = json.loads(out.read_text())
    assert list(stats) == COCO_KEYS
    assert all(v == pytest.approx(1.0) for v in stats.values())
    assert '| res.json | 1.000 |' in capsys.readouterr().out


def test_coco_scores_file_as_is_and_flags_match_the_library(tool, coco_ann, tmp_path):
    from lib.dataset.metainfo import get_metainfo
    from lib.evaluation import coco_keypoints as ck

    results = gt_results(coco_ann, noise=4.0)
    res = write_json(tmp_path / 'res.json', results)
    plain, flagged = tmp_path / 'plain.json', tmp_path / 'flagged.json'
    assert tool.main(['coco', '--ann-file', coco_ann, '--results', res, '--out', str(plain)]) == 0
    assert tool.main(['coco', '--ann-file', coco_ann, '--results', res, '--out', str(flagged),
                      '--rescore', '--oks-nms']) == 0
    sigmas = get_metainfo('coco').sigmas
    as_is = ck.coco_keypoint_eval(coco_ann, results, sigmas)
    assert json.loads(plain.read_text()) == pytest.approx(dict(as_is))
    preds = {'keypoints': np.array([r['keypoints'] for r in results]).reshape(-1, 17, 3),
             'score': np.array([r['score'] for r in results]),
             'area': np.array([r['bbox'][2] * r['bbox'][3] for r in results]),  # the result's bbox area
             'image_id': np.array([r['image_id'] for r in results])}
    expected = ck.coco_keypoint_eval(coco_ann, ck.make_coco_results(preds, sigmas), sigmas)
    assert json.loads(flagged.read_text()) == pytest.approx(dict(expected))
    assert dict(expected) != pytest.approx(dict(as_is))  # rescoring changed the ranking: the flags did something


def mpii_gt_preds(gt_mat):
    from lib.evaluation import load_gt_mat
    return load_gt_mat(gt_mat).joints - 1.0  # 0-based, annotation order


@pytest.mark.parametrize('fmt', ['json', 'npy', 'mat0', 'mat_ours', 'mat_one_based_flag'])
def test_mpii_formats_out_json(tool, gt_mat, tmp_path, fmt):
    preds = mpii_gt_preds(gt_mat)
    extra = []
    if fmt == 'json':
        path = write_json(tmp_path / 'preds.json', {'preds': preds.tolist()})
    elif fmt == 'npy':
        path = str(tmp_path / 'preds.npy')
        np.save(path, preds)
    elif fmt == 'mat0':
        path = str(tmp_path / 'preds.mat')
        savemat(path, {'preds': preds})
    elif fmt == 'mat_ours':  # the pred.mat evaluation writes: 1-based, says so in 'index_base'
        from lib.evaluation.mpii_pckh import save_pred_mat
        path = save_pred_mat(preds, str(tmp_path / 'pred.mat'))
    else:  # a foreign 1-based file (HRNet's pred.mat): the flag says so
        path = str(tmp_path / 'hrnet_pred.mat')
        savemat(path, {'preds': preds + 1.0})
        extra = ['--one-based']
    out = tmp_path / 'pckh.json'
    assert tool.main(['mpii', '--gt-mat', gt_mat, '--preds', path, '--out', str(out)] + extra) == 0
    pckh = json.loads(out.read_text())
    assert list(pckh) == MPII_KEYS and all(v == 100.0 for v in pckh.values())


def test_mpii_one_joint_outside(tool, gt_mat, tmp_path):
    from lib.evaluation import load_gt_mat
    from lib.evaluation.mpii_pckh import head_sizes

    preds = mpii_gt_preds(gt_mat)
    preds[0, 10, 1] += 0.51 * head_sizes(load_gt_mat(gt_mat).headboxes)[0]  # right wrist, just outside
    out = tmp_path / 'pckh.json'
    path = write_json(tmp_path / 'preds.json', {'preds': preds.tolist()})
    assert tool.main(['mpii', '--gt-mat', gt_mat, '--preds', path, '--out', str(out)]) == 0
    pckh = json.loads(out.read_text())
    assert pckh['Wrist'] == pytest.approx(90.0) and pckh['Mean'] == pytest.approx(100.0 * 65 / 66)


def bad_cases(tmp_path, coco_ann, gt_mat):
    """(argv, text the error line must contain) for each kind of bad input."""
    truncated = tmp_path / 'truncated.json'
    truncated.write_text('[{"image_id": 785, "category_id": 1, "keypo')
    short = write_json(tmp_path / 'short.json', [{'image_id': 785, 'category_id': 1, 'keypoints': [1, 2, 3],
                                                  'score': 1.0}])
    stranger = write_json(tmp_path / 'stranger.json', [{'image_id': 1, 'category_id': 1, 'keypoints': [1.0] * 51,
                                                        'score': 1.0}])
    wrong_shape = write_json(tmp_path / 'wrong_shape.json', {'preds': np.zeros((5, 14, 2)).tolist()})
    ragged = write_json(tmp_path / 'ragged.json', {'preds': [[[1, 2]], [[1, 2], [3, 4]]]})
    no_key = write_json(tmp_path / 'no_key.json', [[1, 2]])
    savemat(str(tmp_path / 'novar.mat'), {'other': np.zeros(3)})
    (tmp_path / 'preds.txt').write_text('1 2')
    missing = str(tmp_path / 'missing.json')
    return [
        (['coco', '--ann-file', missing, '--results', short], 'missing.json: annotation file not found'),
        (['coco', '--ann-file', coco_ann, '--results', missing], 'missing.json: results file not found'),
        (['coco', '--ann-file', coco_ann, '--results', str(truncated)],
         'truncated.json: results file is not valid JSON'),
        (['coco', '--ann-file', str(truncated), '--results', short], 'truncated.json: annotation file is not valid'),
        (['coco', '--ann-file', coco_ann, '--results', short],
         "short.json: entry 0 (image_id 785): 'keypoints' has 3 values"),
        (['coco', '--ann-file', coco_ann, '--results', stranger],
         'stranger.json: entry 0 (image_id 1): image_id 1 is not in the annotation file'),
        (['coco', '--ann-file', coco_ann, '--results', stranger, '--metainfo', 'mpii'], "metainfo 'mpii' has 16"),
        (['mpii', '--gt-mat', gt_mat, '--preds', wrong_shape], 'wrong_shape.json: predictions have shape (5, 14, 2)'),
        (['mpii', '--gt-mat', gt_mat, '--preds', ragged], 'ragged.json: "preds" is not a rectangular'),
        (['mpii', '--gt-mat', gt_mat, '--preds', no_key], 'no_key.json: expected a JSON object with a "preds"'),
        (['mpii', '--gt-mat', gt_mat, '--preds', str(tmp_path / 'novar.mat')],
         "novar.mat: variable 'preds' is missing"),
        (['mpii', '--gt-mat', gt_mat, '--preds', str(tmp_path / 'preds.txt')], "preds.txt: unknown predictions format"),
        (['mpii', '--gt-mat', missing, '--preds', wrong_shape], 'missing.json: ground-truth .mat file not found'),
        (['mpii', '--gt-mat', str(truncated), '--preds', wrong_shape], 'truncated.json: not a readable .mat'),
    ]


def test_bad_inputs_give_one_error_line(tool, coco_ann, gt_mat, tmp_path, capsys):
    for argv, message in bad_cases(tmp_path, coco_ann, gt_mat):
        capsys.readouterr()
        assert tool.main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith('error: ') and err.count('\n') == 1, err
        assert message in err, (message, err)


@pytest.mark.slow
def test_cli_subprocess(coco_ann, gt_mat, tmp_path):
    """The script as users run it: exit codes, stdout table, and no traceback on bad input."""
    preds = write_json(tmp_path / 'preds.json', {'preds': mpii_gt_preds(gt_mat).tolist()})
    ok = subprocess.run([sys.executable, TOOL, 'mpii', '--gt-mat', gt_mat, '--preds', preds],
                        capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert '| Model | Head | Shoulder |' in ok.stdout and '| preds.json | 100.000 |' in ok.stdout
    bad = subprocess.run([sys.executable, TOOL, 'coco', '--ann-file', coco_ann, '--results', str(tmp_path / 'x.json')],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and 'Traceback' not in bad.stderr
    assert bad.stderr.strip() == f"error: {tmp_path / 'x.json'}: results file not found"


# --- only valid input is scored --------------------------------------------------------------------------

def run_tool_main(tool, capsys, argv):
    capsys.readouterr()
    code = tool.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_summary_line_says_how_many_results_were_scored(tool, coco_ann, tmp_path, capsys):
    res = write_json(tmp_path / 'res.json', gt_results(coco_ann))
    code, out, err = run_tool_main(tool, capsys, ['coco', '--ann-file', coco_ann, '--results', res])
    assert code == 0 and err == ''
    assert out.splitlines()[-1] == f'{res}: scored 12 of 12 results'
    code, out, _ = run_tool_main(tool, capsys, ['coco', '--ann-file', coco_ann, '--results', res, '--oks-nms'])
    assert code == 0 and out.splitlines()[-1] == f'{res}: scored 12 of 12 results; OKS NMS removed 0'


def test_ground_truth_with_nan_keypoints_exits_2_naming_the_annotation(tool, coco_ann, tmp_path, capsys):
    """Today's failure: pycocotools scored it AP 1.000."""
    gt = json.loads(open(coco_ann).read())
    victim = next(a for a in gt['annotations'] if a['num_keypoints'] > 0)
    victim['keypoints'][:3] = [float('nan')] * 3
    ann = write_json(tmp_path / 'nan_gt.json', gt)  # bare NaN tokens, which json.load accepts
    res = write_json(tmp_path / 'res.json', gt_results(coco_ann))
    code, out, err = run_tool_main(tool, capsys, ['coco', '--ann-file', ann, '--results', res])
    assert code == 2 and out == '' and err.count('\n') == 1
    assert err.startswith(f"error: {ann}: annotation id {victim['id']} (image_id {victim['image_id']}): "
                          f'keypoints value 0 (joint 0 x) is nan')


def invalid_results(coco_ann):
    """(results, {reason: count}) -- GT results with one broken entry of each kind, at known indices."""
    results = gt_results(coco_ann)
    results[2]['keypoints'][4] = float('nan')  # a joint's y
    results[3]['score'] = float('inf')
    results[5]['score'] = 'high'
    results[7]['category_id'] = 2  # one stray id: silently changed AP before
    return results, {2: 'keypoints value 4 (joint 1 y) is nan', 3: 'score is inf', 5: "score is 'high', not a number",
                     7: "category_id is 2, but the ground truth's keypoint category is 1"}


def test_each_invalid_result_exits_2_naming_file_and_index(tool, coco_ann, tmp_path, capsys):
    results, problems = invalid_results(coco_ann)
    for index, detail in problems.items():
        one = gt_results(coco_ann)
        one[index] = results[index]
        res = tmp_path / f'bad{index}.json'
        res.write_text(json.dumps(one))  # allow_nan: the file holds NaN / Infinity tokens
        for extra in ([], ['--rescore']):  # rescoring would turn a NaN joint score into a NaN pose score
            code, out, err = run_tool_main(tool, capsys, ['coco', '--ann-file', coco_ann, '--results', str(res)]
                                           + extra)
            assert code == 2 and out == '' and err.count('\n') == 1, err
            assert err.startswith(f"error: {res}: entry {index} (image_id {one[index]['image_id']}): {detail}"), err
            assert '--drop-invalid' in err


def test_drop_invalid_scores_the_rest_and_counts_by_reason(tool, coco_ann, tmp_path, capsys):
    results, problems = invalid_results(coco_ann)
    res = tmp_path / 'mixed.json'
    res.write_text(json.dumps(results))
    out_json = tmp_path / 'stats.json'
    code, out, err = run_tool_main(tool, capsys, ['coco', '--ann-file', coco_ann, '--results', str(res),
                                                  '--drop-invalid', '--out', str(out_json)])
    assert code == 0 and err == ''
    assert (f'{res}: scored 8 of 12 results; dropped 4: 1 non-finite keypoints, 1 non-finite score, '
            f'1 non-numeric score, 1 wrong category_id') in out
    # The score is exactly that of the valid results alone: nothing dropped changes it.
    valid = write_json(tmp_path / 'valid.json', [r for i, r in enumerate(results) if i not in problems])
    reference = tmp_path / 'reference.json'
    assert tool.main(['coco', '--ann-file', coco_ann, '--results', valid, '--out', str(reference)]) == 0
    assert json.loads(out_json.read_text()) == json.loads(reference.read_text())
    assert json.loads(out_json.read_text())['AP'] < 1.0  # 4 of 12 people missing


def test_scores_above_1_give_a_warning_line_not_an_error(tool, coco_ann, tmp_path, capsys):
    results = gt_results(coco_ann)
    results[0]['score'], results[1]['score'] = 3.5, 1.2
    res = write_json(tmp_path / 'logits.json', results)
    code, out, err = run_tool_main(tool, capsys, ['coco', '--ann-file', coco_ann, '--results', res])
    assert code == 0 and '| logits.json | 1.000 |' in out
    assert err.startswith(f'warning: {res}: 2 of 12 results have a score above 1 (max 3.5)') and err.count('\n') == 1


def test_mpii_non_finite_prediction_exits_2(tool, gt_mat, tmp_path, capsys):
    preds = mpii_gt_preds(gt_mat)
    preds[3, 10, 0] = np.nan
    path = str(tmp_path / 'preds.npy')
    np.save(path, preds)
    code, out, err = run_tool_main(tool, capsys, ['mpii', '--gt-mat', gt_mat, '--preds', path])
    assert code == 2 and out == ''
    assert err.startswith(f'error: {path}: person 3 joint 10 (rwri) is [nan, ') and 'not finite (1 such joints)' in err


def test_mpii_summary_and_metrics_file_without_nan_tokens(tool, gt_mat, tmp_path, capsys):
    path = write_json(tmp_path / 'preds.json', {'preds': mpii_gt_preds(gt_mat).tolist()})
    out_json = tmp_path / 'pckh.json'
    code, out, _ = run_tool_main(tool, capsys, ['mpii', '--gt-mat', gt_mat, '--preds', path, '--out', str(out_json)])
    assert code == 0 and f'{path}: scored 5 of 5 people (76 annotated joints)' in out
    json.loads(out_json.read_text(), parse_constant=lambda c: pytest.fail(f'{c} in the metrics file'))
    code, out, err = run_tool_main(tool, capsys, ['mpii', '--gt-mat', gt_mat, '--preds', path, '--out', str(tmp_path)])
    assert code == 2 and err.startswith(f'error: {tmp_path}: cannot write the metrics file')  # --out is a folder


def test_oks_nms_needs_a_finite_area(tool, coco_ann, tmp_path, capsys):
    results = gt_results(coco_ann)
    results[0]['score'] = float('nan')  # dropped first, so the entry index below is the file's
    results[6]['bbox'] = [0, 0, 'wide', 10]
    res = tmp_path / 'res.json'
    res.write_text(json.dumps(results))
    argv = ['coco', '--ann-file', coco_ann, '--results', str(res), '--drop-invalid']
    assert run_tool_main(tool, capsys, argv + ['--rescore'])[0] == 0  # the area is only read by OKS NMS
    code, _, err = run_tool_main(tool, capsys, argv + ['--oks-nms'])
    assert code == 2 and err.startswith(f"error: {res}: entry 6 (image_id {results[6]['image_id']}): its 'area' or "
                                        f"'bbox' ([0, 0, 'wide', 10]) is not a finite area")
