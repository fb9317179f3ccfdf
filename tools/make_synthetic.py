"""Generate the synthetic COCO-format person keypoint data set (the quick start's default data).

    python tools/make_synthetic.py --out data/synthetic [--seed 0] [--num-train 1500] [--num-val 150]
        [--image-size 320 240] [--people 1 3] [--person-height 0.45 0.95] [--clutter 1.0]
        [--area-ratio 0.55]

--num-train/--num-val count images (1-3 people each by default). Same seed, same files.
"""
import argparse
import json
import logging

import _init_paths  # noqa: F401

from lib.dataset.synthetic import SyntheticConfig, make_synthetic_dataset


def parse_args() -> argparse.Namespace:
    d = SyntheticConfig()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--out', default='data/synthetic', help='output root (becomes DATASET.ROOT)')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--num-train', type=int, default=1500, help='training images')
    p.add_argument('--num-val', type=int, default=150, help='validation images')
    p.add_argument('--image-size', type=int, nargs=2, default=list(d.image_size), metavar=('W', 'H'))
    p.add_argument('--people', type=int, nargs=2, default=list(d.people_per_image), metavar=('MIN', 'MAX'),
                   help='people per image (inclusive range)')
    p.add_argument('--person-height', type=float, nargs=2, default=list(d.person_height), metavar=('LO', 'HI'),
                   help='figure height as a fraction of the image height')
    p.add_argument('--clutter', type=float, default=d.clutter,
                   help='background clutter and occluders multiplier (0 = plain background)')
    p.add_argument('--area-ratio', type=float, default=d.area_ratio,
                   help="annotation 'area' = ratio x box area (sets OKS strictness; COCO people ~0.5-0.6)")
    p.add_argument('--jpeg-quality', type=int, default=d.jpeg_quality)
    return p.parse_args()


def main() -> None:
    args = parse_args()
    logging.basicConfig(level=logging.INFO, format='%(message)s')
    if args.people[0] < 1 or args.people[1] < args.people[0]:
        raise SystemExit(f'--people must be 1 <= MIN <= MAX, got {args.people}')
    summary = make_synthetic_dataset(
        args.out, seed=args.seed, num_train=args.num_train, num_val=args.num_val,
        image_size=tuple(args.image_size), people_per_image=tuple(args.people),
        person_height=tuple(args.person_height), clutter=args.clutter, area_ratio=args.area_ratio,
        jpeg_quality=args.jpeg_quality)
    print(json.dumps(summary, indent=1))


if __name__ == '__main__':
    main()
