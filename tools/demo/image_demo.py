"""Predictions of a det / seg / cls config on an image or a folder, drawn by
the task's OpenMMLab visualizer.

    python tools/demo/image_demo.py IMAGE_OR_FOLDER CONFIG CHECKPOINT \
        [--out-dir outputs] [--score-thr 0.3] [--topk 5] [--device cpu]

Writes ``OUT_DIR/<image name>.png``: boxes (and masks) for detection
configs, the label map for segmentation configs, the top-k classes with
their scores for classification configs.
"""
import argparse
import os
import os.path as osp

import cv2

from mmpoolformer.utils.errors import ToolError, exit_on_tool_error
from mmpoolformer.visualization import draw_prediction, load_model, predict

IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp', '.webp')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('inputs', help='an image or a folder of images')
    parser.add_argument('config')
    parser.add_argument('checkpoint')
    parser.add_argument('--out-dir', default='outputs')
    parser.add_argument('--score-thr', type=float, default=0.3)
    parser.add_argument('--topk', type=int, default=5)
    parser.add_argument('--device', default='cpu')
    return parser.parse_args(argv)


def list_images(inputs):
    if osp.isdir(inputs):
        images = sorted(osp.join(inputs, f) for f in os.listdir(inputs)
                        if f.lower().endswith(IMAGE_SUFFIXES))
        if not images:
            raise ToolError(f'no images ({", ".join(IMAGE_SUFFIXES)}) in '
                            f'{inputs}')
        return images
    if not osp.isfile(inputs):
        raise ToolError(f'{inputs} is neither an image nor a folder')
    return [inputs]


def main(argv=None):
    with exit_on_tool_error('image_demo.py'):
        args = parse_args(argv)
        images = list_images(args.inputs)
        model, task = load_model(args.config, args.checkpoint, args.device)
        written = []
        for path in images:
            image = cv2.imread(path)
            if image is None:
                raise ToolError(f'{path} is not an image OpenCV can read')
            image = image[..., ::-1].copy()
            sample = predict(model, task, image)
            out = osp.join(args.out_dir,
                           osp.splitext(osp.basename(path))[0] + '.png')
            draw_prediction(model, task, image, sample, out, args.score_thr,
                            args.topk)
            written.append(out)
            print(f'{path} -> {out}')
        return written


if __name__ == '__main__':
    main()
