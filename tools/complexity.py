"""Parameters and FLOPs of a configured model, counted by the rule of the published Lite-HRNet table.

    python tools/complexity.py --cfg experiments/coco/lite_hrnet/lite_hrnet_18_256x192.yaml [--verbose [--depth N]] [--json]
    python tools/complexity.py            # every config under experiments/ (not _base_/), beside the published numbers

FLOPs follow the official tool's rule (lib/models/complexity.py; batch 1, keypoint head included) and
are printed in plain units and in the table's unit Mi = 2^20. Beside them: the true multiply-adds of
every call of this implementation and of the official forward (which runs the branch-0 fuse paths twice).
With --json the last line is {"params": N, "flops": N}.
"""
from __future__ import annotations

import argparse
import json
import os

import _init_paths  # noqa: F401
import torch

from lib.config import experiment_configs, load_config
from lib.models import build_model
from lib.models.complexity import Complexity, count_complexity, group_costs

REPO_ROOT = _init_paths.REPO_ROOT
MI = 2 ** 20
# The published table (Lite-HRNet README / paper): (params in M, FLOPs in "M" = units of 2^20).
# Keyed by <MODEL.NAME>_<dataset>_<H>x<W>.
PUBLISHED = {
    'naive_litehrnet_18_coco_256x192': (0.7, 194.8),
    'wider_naive_litehrnet_18_coco_256x192': (1.3, 311.1),
    'litehrnet_18_coco_256x192': (1.1, 205.2),
    'litehrnet_18_coco_384x288': (1.1, 461.6),
    'litehrnet_30_coco_256x192': (1.8, 319.2),
    'litehrnet_30_coco_384x288': (1.8, 717.8),
    'naive_litehrnet_18_mpii_256x256': (0.7, 259.6),
    'wider_naive_litehrnet_18_mpii_256x256': (1.3, 418.7),  # not reproducible: the config gives 414.58
    'litehrnet_18_mpii_256x256': (1.1, 273.4),
    'litehrnet_30_mpii_256x256': (1.8, 425.3),
}
OFFICIAL_TOOL_JSON = os.path.join(REPO_ROOT, 'tests', 'data', 'reference', 'flops_reference.json')


def table_key(cfg) -> str:
    width, height = cfg.MODEL.IMAGE_SIZE
    return f'{cfg.MODEL.NAME}_{cfg.DATASET.DATASET}_{height}x{width}'


def measure(cfg) -> Complexity:
    torch.manual_seed(0)
    width, height = cfg.MODEL.IMAGE_SIZE
    return count_complexity(build_model(cfg), (height, width))


def print_one(cfg_path: str, opts: list[str], verbose: bool, as_json: bool, depth: int = 3) -> None:
    cfg = load_config(cfg_path, opts)
    c = measure(cfg)
    width, height = cfg.MODEL.IMAGE_SIZE
    print(f'{cfg.MODEL.NAME}, {cfg.MODEL.NUM_JOINTS} joints, input {height}x{width} (HxW), batch 1')
    if verbose:
        model = build_model(cfg)
        print(f"\n{'module':<40} {'params':>10} {'FLOPs (rule)':>14} {'Mi':>8}")
        for name, (params, flops) in group_costs(c.per_module, model, depth).items():
            print(f'{name:<40} {params:>10,} {flops:>14,} {flops / MI:>8.2f}')
        print('\ncomponents of the rule: ' + ', '.join(f'{k} {v:,}' for k, v in c.components.items()))
    print(f'params:                     {c.params:,}')
    print(f'FLOPs (published rule):     {c.flops:,}  = {c.flops / MI:.2f} Mi (the table\'s "M")')
    print(f'true MACs, this model:      {c.true_macs:,}  (every call, torch.utils.flop_counter / 2)')
    print(f'true MACs, official forward: {c.official_true_macs:,}  (runs the branch-0 fuse paths twice)')
    published = PUBLISHED.get(table_key(cfg))
    if published:
        print(f'published:                  {published[0]}M params, {published[1]}M FLOPs '
              f'({100 * (c.flops / MI / published[1] - 1):+.2f}%)')
    if as_json:
        print(json.dumps({'params': c.params, 'flops': c.flops}))


def print_table(as_json: bool) -> None:
    official = {}
    if os.path.isfile(OFFICIAL_TOOL_JSON):
        with open(OFFICIAL_TOOL_JSON) as f:
            official = json.load(f)['variants']
    paths = experiment_configs(os.path.join(REPO_ROOT, 'experiments'))  # _base_/ recipes are not configs
    print('| config | params | pub. params | FLOPs (rule) | Mi | pub. FLOPs | vs pub. | official tool | '
          'vs tool | true MACs ours | true MACs official |')
    print('|---|---|---|---|---|---|---|---|---|---|---|')
    rows = []
    for path in paths:
        cfg = load_config(path)
        c = measure(cfg)
        key = table_key(cfg)
        pub = PUBLISHED.get(key)
        ref = official.get(key, {}).get('torchstat_flops')
        cells = [os.path.relpath(path, REPO_ROOT), f'{c.params:,}', f'{pub[0]}M' if pub else '-', f'{c.flops:,}',
                 f'{c.flops / MI:.2f}', f'{pub[1]}' if pub else '-',
                 f'{100 * (c.flops / MI / pub[1] - 1):+.2f}%' if pub else '-',
                 f'{ref:,}' if ref else '-', f'{100 * (c.flops / ref - 1):+.3f}%' if ref else '-',
                 f'{c.true_macs:,}', f'{c.official_true_macs:,}']
        print('| ' + ' | '.join(cells) + ' |', flush=True)
        rows.append({'config': cells[0], 'params': c.params, 'flops': c.flops})
    if as_json:
        print(json.dumps(rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--cfg', help='experiment YAML; without it, a table of every YAML under experiments/')
    parser.add_argument('--verbose', action='store_true', help='per-module breakdown')
    parser.add_argument('--depth', type=int, default=3, help='--verbose: name parts to group by (99 = every leaf)')
    parser.add_argument('--json', action='store_true', help='last line: {"params": N, "flops": N}')
    parser.add_argument('opts', nargs=argparse.REMAINDER, help='KEY VALUE config overrides')
    args = parser.parse_args()
    torch.set_num_threads(min(2, torch.get_num_threads()))
    if args.cfg:
        print_one(args.cfg, args.opts, args.verbose, args.json, args.depth)
    else:
        print_table(args.json)


if __name__ == '__main__':
    main()
