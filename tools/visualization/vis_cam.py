"""Grad-CAM of our backbones, as PNG overlays.

    python tools/visualization/vis_cam.py IMAGE CONFIG [CHECKPOINT] \
        [--out cam.png] [--method gradcam] [--target-category K] [--size 224]
    python tools/visualization/vis_cam.py IMAGE --compare \
        CONFIG1 CKPT1 CONFIG2 CKPT2 ... [--titles A B ...]

A classifier config explains its predicted (or ``--target-category``)
class; a detection / segmentation config explains the mean activation of
its backbone's last returned stage. The target layer is that stage, for
every registered arch. ``--compare`` puts several models side by side after
the input, as the PoolFormer paper's Grad-CAM figure. Use ``none`` as the
checkpoint for random weights (a warning is printed). CPU is enough. An
existing ``--out`` is replaced only with ``--force``.
"""
import argparse
import os.path as osp
import warnings

import cv2
import numpy as np

from mmpoolformer.fileio import check_output_path, write_image_atomic
from mmpoolformer.visualization import grad_cam, load_model
from mmpoolformer.visualization.cam import METHODS


class ToolError(Exception):
    """A problem the user can fix: main() prints its message alone and exits
    with status 1."""


IMAGENET_MEAN, IMAGENET_STD = [123.675, 116.28, 103.53], [58.395, 57.12, 57.375]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('image')
    parser.add_argument('config', nargs='?')
    parser.add_argument('checkpoint', nargs='?')
    parser.add_argument('--compare', nargs='+', metavar='CONFIG CKPT',
                        help='pairs of config and checkpoint (or none)')
    parser.add_argument('--titles', nargs='+')
    parser.add_argument('--method', default='gradcam', choices=METHODS)
    parser.add_argument('--target-category', type=int)
    parser.add_argument('--size', type=int, default=224,
                        help='square input size (default 224)')
    parser.add_argument('--out', default='cam.png')
    parser.add_argument('--force', action='store_true',
                        help='replace an existing --out file')
    args = parser.parse_args(argv)
    if args.compare:
        if args.config or len(args.compare) % 2:
            parser.error('--compare takes CONFIG CHECKPOINT pairs (use none '
                         'for random weights) and no positional config')
        args.models = list(zip(args.compare[::2], args.compare[1::2]))
    elif args.config:
        args.models = [(args.config, args.checkpoint or 'none')]
    else:
        parser.error('give a CONFIG [CHECKPOINT] or --compare pairs')
    return args


def read_image(path, size):
    if not osp.isfile(path):
        raise ToolError(f'image {path} does not exist')
    image = cv2.imread(path)
    if image is None:
        raise ToolError(f'{path} is not an image OpenCV can read')
    return cv2.resize(image, (size, size))[..., ::-1].copy()


def normalisation(model):
    pre = getattr(model, 'data_preprocessor', None)
    mean = getattr(pre, 'mean', None)
    std = getattr(pre, 'std', None)
    if mean is None or std is None:
        return IMAGENET_MEAN, IMAGENET_STD
    return mean.flatten().tolist(), std.flatten().tolist()


def titled(image, title):
    bar = np.full((28, image.shape[1], 3), 255, np.uint8)
    width = cv2.getTextSize(title, cv2.FONT_HERSHEY_SIMPLEX, 0.5, 1)[0][0]
    scale = 0.5 * min(1., (image.shape[1] - 8) / max(width, 1))
    cv2.putText(bar, title, (4, 20), cv2.FONT_HERSHEY_SIMPLEX, scale,
                (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([bar, image], 0)


def main(argv=None):
    try:
        args = parse_args(argv)
        check_output_path(args.out, args.force)
        image = read_image(args.image, args.size)
        titles = args.titles or [osp.splitext(osp.basename(c))[0]
                                 for c, _ in args.models]
        if len(titles) != len(args.models):
            raise ToolError(f'{len(titles)} --titles for {len(args.models)} '
                            'models')
        panels = [titled(image, 'input')]
        for (config, checkpoint), title in zip(args.models, titles):
            if checkpoint.lower() == 'none':
                warnings.warn(f'{config}: no checkpoint, random weights')
                checkpoint = None
            model, task = load_model(config, checkpoint)
            mean, std = normalisation(model)
            overlay, _, target = grad_cam(model, task, image, mean, std,
                                          args.method, args.target_category)
            label = f'{title}: class {target}' if task == 'cls' else title
            panels.append(titled(overlay, label))
        write_image_atomic(args.out, np.ascontiguousarray(
            np.concatenate(panels, 1)[..., ::-1]))
        print(f'Grad-CAM written to {args.out}')
        return args.out
    except (ToolError, OSError, ValueError, TypeError, ImportError) as exc:
        raise SystemExit(f'vis_cam.py: error: {exc}') from None


if __name__ == '__main__':
    main()
