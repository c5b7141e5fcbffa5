"""Predictions of a det / seg / cls config on an image or a folder, drawn by
the task's OpenMMLab visualizer.

    python tools/demo/image_demo.py IMAGE_OR_FOLDER CONFIG CHECKPOINT \
        [--out-dir outputs] [--score-thr 0.3] [--topk 5] [--device cpu] \
        [--force]

Writes ``OUT_DIR/<image name>.png``: boxes (and masks) for detection
configs, the label map for segmentation configs, the top-k classes with
their scores for classification configs. Inputs sharing a name
(``x.jpg``, ``x.png``) are written as ``x_jpg.png`` and ``x_png.png``.

Nothing of the user's is replaced: an output folder that holds the input
images is refused, and so is an existing drawing unless ``--force``. An
image that cannot be read is named and skipped; the others are drawn, and
the tool then exits with status 1 and a summary.
"""
import argparse
import os
import os.path as osp
from collections import Counter

import cv2

from mmpoolformer.fileio import remove_stale_partials
from mmpoolformer.visualization import draw_prediction, load_model, predict


class ToolError(Exception):
    """A problem the user can fix: main() prints its message alone and exits
    with status 1."""


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
    parser.add_argument('--force', action='store_true',
                        help='replace drawings already in --out-dir')
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


def output_names(images):
    """``{input path: output file name}``, one distinct name per input:
    ``<stem>.png``, or ``<stem>_<ext>.png`` where stems repeat."""
    stems = Counter(osp.splitext(osp.basename(p))[0] for p in images)
    names, taken = {}, Counter()
    for path in images:
        stem, ext = osp.splitext(osp.basename(path))
        name = stem if stems[stem] == 1 else f'{stem}_{ext.lstrip(".")}'
        taken[name] += 1
        if taken[name] > 1:  # e.g. inputs x.jpg, x.png and x_jpg.png
            name = f'{name}_{taken[name]}'
        names[path] = name + '.png'
    return names


def check_out_dir(images, names, out_dir, force):
    """Refuse a folder holding the inputs, and existing drawings unless
    ``force``; before loading the model, so nothing is written."""
    out = osp.realpath(out_dir)
    inside = [p for p in images if osp.dirname(osp.realpath(p)) == out]
    if inside:
        raise ToolError(
            f'--out-dir {out_dir} holds the input images ({inside[0]}'
            f'{", ..." if len(inside) > 1 else ""}); the drawings could '
            'replace them: choose another --out-dir')
    existing = [osp.join(out_dir, n) for n in names.values()
                if osp.lexists(osp.join(out_dir, n))]
    if existing and not force:
        raise ToolError(
            f'{len(existing)} drawing(s) exist in --out-dir {out_dir} '
            f'({", ".join(existing[:3])}{", ..." if len(existing) > 3 else ""}'
            '); pass --force to replace them, or choose another --out-dir')
    remove_stale_partials(out_dir)


def main(argv=None):
    try:
        args = parse_args(argv)
        images = list_images(args.inputs)
        names = output_names(images)
        check_out_dir(images, names, args.out_dir, args.force)
        model, task = load_model(args.config, args.checkpoint, args.device)
        written, failed = [], []
        for path in images:
            image = cv2.imread(path)
            if image is None:
                failed.append(path)
                print(f'{path}: skipped, not an image OpenCV can read')
                continue
            image = image[..., ::-1].copy()
            sample = predict(model, task, image)
            out = osp.join(args.out_dir, names[path])
            draw_prediction(model, task, image, sample, out, args.score_thr,
                            args.topk)
            written.append(out)
            print(f'{path} -> {out}')
        if failed:
            raise ToolError(
                f'{len(failed)} of {len(images)} images could not be read '
                f'and were skipped ({", ".join(failed[:5])}'
                f'{", ..." if len(failed) > 5 else ""}); the other '
                f'{len(written)} are drawn in {args.out_dir}')
        return written
    except (ToolError, OSError, ValueError) as exc:
        raise SystemExit(f'image_demo.py: error: {exc}') from None


if __name__ == '__main__':
    main()
