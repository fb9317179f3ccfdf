"""Training-pipeline throughput of one data-loader worker, beside the JPEG decode rate alone.

    python tools/benchmark_data.py [--images 48] [--size 640 480] [--input 192 256] [--repeat 3]
    python tools/benchmark_data.py --root ../shared/data/coco_tiny --repeat 10   # real COCO photos

Writes COCO-size JPEGs (procedural people over a noisy, cluttered background, so the files are about
as large as COCO photos) and a COCO keypoint json into a temporary folder, then times, in this one
process with OpenCV/torch limited to one thread (as in a DataLoader worker):
  decode    cv2.imread of each file
  pipeline  dataset[i] in training mode with the official COCO augmentation (half-body, scale,
            rotation, flip, box jitter), the affine crop, normalisation and heatmap encoding
and the pipeline's parts on their own. The aim is pipeline <= 1.5 x decode per sample.
"""
import argparse
import os
import tempfile
import time

import _init_paths

import cv2
import numpy as np
import torch


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--images', type=int, default=48, help='JPEG files to generate')
    p.add_argument('--size', type=int, nargs=2, default=[640, 480], metavar=('W', 'H'), help='image size')
    p.add_argument('--input', type=int, nargs=2, default=[192, 256], metavar=('W', 'H'), help='network input')
    p.add_argument('--repeat', type=int, default=3, help='passes over the data (best pass is reported)')
    p.add_argument('--noise', type=float, default=10.0, help='per-pixel noise std, makes JPEGs photo-sized')
    p.add_argument('--dir', default='', help='write the images here instead of a temporary folder')
    p.add_argument('--no-malloc-tuning', action='store_true',
                   help="keep glibc's default malloc thresholds (a worker process tunes them, see tune_malloc)")
    p.add_argument('--root', default='', help='time an existing COCO-layout root (its val2017) instead, '
                   'e.g. ../shared/data/coco_tiny for real photos')
    return p.parse_args()


def write_images(root: str, n: int, size: tuple, noise: float, seed: int = 0) -> None:
    """A COCO-layout val2017 split of n noisy synthetic photos with people annotations."""
    import json
    from lib.dataset.synthetic import SyntheticConfig, _categories, render_image
    rng = np.random.default_rng(seed)
    cfg = SyntheticConfig(image_size=tuple(size), people_per_image=(1, 3))
    os.makedirs(os.path.join(root, 'images', 'val2017'), exist_ok=True)
    os.makedirs(os.path.join(root, 'annotations'), exist_ok=True)
    images, anns = [], []
    for i in range(n):
        img, people = render_image(rng, cfg)
        img = np.clip(img + rng.normal(0, noise, img.shape), 0, 255).astype(np.uint8)
        name = f'{i + 1:012d}.jpg'
        cv2.imwrite(os.path.join(root, 'images', 'val2017', name), img, [cv2.IMWRITE_JPEG_QUALITY, 90])
        images.append(dict(id=i + 1, file_name=name, width=size[0], height=size[1]))
        for p in people:
            k = p['keypoints']
            anns.append(dict(id=len(anns) + 1, image_id=i + 1, category_id=1, iscrowd=0, bbox=p['bbox'],
                             area=p['bbox'][2] * p['bbox'][3] * 0.55, num_keypoints=int((k[:, 2] > 0).sum()),
                             keypoints=k.reshape(-1).tolist()))
    with open(os.path.join(root, 'annotations', 'person_keypoints_val2017.json'), 'w') as f:
        json.dump(dict(images=images, annotations=anns, categories=_categories()), f)


def best_rates(fns: dict, n: int, repeat: int) -> dict:
    """Items per CPU second of each fn(i), i < n: the fastest of `repeat` passes.

    CPU time of this process (one thread), not wall time, and the functions take turns pass by pass,
    so other processes on a shared machine disturb the comparison as little as possible.
    """
    best = {name: float('inf') for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            start = time.process_time()
            for i in range(n):
                fn(i)
            best[name] = min(best[name], time.process_time() - start)
    return {name: n / t for name, t in best.items()}


def main() -> None:
    args = parse_args()
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    from lib.config import load_config
    from lib.dataset import build_dataset
    from lib.dataset.joints_dataset import read_image, tune_malloc
    if not args.no_malloc_tuning:
        tune_malloc()  # what JointsDataset does in every DataLoader worker process
    from lib.dataset.transforms import get_affine_transform, normalize_image, warp_crop

    with tempfile.TemporaryDirectory() as tmp:
        root = args.root or args.dir or tmp
        if not args.root:
            write_images(root, args.images, args.size, args.noise)
        w_in, h_in = args.input
        # the official COCO augmentation (half-body 0.3, scale 0.25, rotation 30 @ 0.6, flip, box jitter 0.3)
        yaml_path = os.path.join(_init_paths.REPO_ROOT, 'experiments/coco/lite_hrnet/lite_hrnet_18_256x192.yaml')
        cfg = load_config(yaml_path, ['DATASET.ROOT', root, 'DATASET.TRAIN_SET', 'val2017',
                                      'MODEL.IMAGE_SIZE', [w_in, h_in], 'MODEL.HEATMAP_SIZE', [w_in // 4, h_in // 4]])
        ds = build_dataset(cfg, is_train=True)
        torch.manual_seed(0)
        files = sorted(os.listdir(os.path.join(root, 'images', 'val2017')))
        paths = [os.path.join(root, 'images', 'val2017', f) for f in files]
        mean_kb = np.mean([os.path.getsize(p) for p in paths]) / 1024
        n = len(ds)
        image_of = [r['image_file'] for r in ds.db]

        cache = {p: read_image(p) for p in set(image_of)}
        size = ds.image_size
        crops = [warp_crop(cache[image_of[i]], ds.db[i]['center'], ds.db[i]['scale'], 0.0, size) for i in range(n)]
        mats = [get_affine_transform(r['center'], r['scale'], 0, size) for r in ds.db]
        joints = [(r['joints'] @ m[:, :2].T + m[:, 2], r['visible']) for r, m in zip(ds.db, mats)]
        widths = [cache[p].shape[1] for p in image_of]
        aug_rng = np.random.default_rng(0)
        rates = best_rates({
            'JPEG decode alone (cv2.imread)': lambda i: read_image(image_of[i]),
            'training pipeline (dataset[i])': lambda i: ds[i],
            '  augmentation draw': lambda i: ds.augment(ds.db[i], widths[i], aug_rng),
            '  affine crop (warpAffine)': lambda i: warp_crop(cache[image_of[i]], ds.db[i]['center'],
                                                              ds.db[i]['scale'], 10.0, size, flip=True),
            '  normalise to float CHW': lambda i: normalize_image(crops[i]),
            '  heatmap encode': lambda i: ds.codec.encode(*joints[i]),
        }, n, args.repeat)

    what = f'{root} val2017' if args.root else f'{args.images} generated {args.size[0]}x{args.size[1]}'
    print(f'{what}: {len(paths)} JPEGs (mean {mean_kb:.0f} KB), {n} person samples, '
          f'input {w_in}x{h_in}, heatmap {w_in // 4}x{h_in // 4}, 1 thread, '
          f'malloc tuning {"off" if args.no_malloc_tuning else "on"}, CPU time')
    print('| step | samples/s per worker | ms/sample |')
    print('|---|---|---|')
    for name, rate in rates.items():
        print(f'| {name} | {rate:.0f} | {1000 / rate:.2f} |')
    decode, pipeline = rates['JPEG decode alone (cv2.imread)'], rates['training pipeline (dataset[i])']
    print(f'pipeline / decode cost ratio: {decode / pipeline:.2f}x (aim <= 1.5x)')


if __name__ == '__main__':
    main()
