"""Procedural shapes written in the real COCO, ADE20K and ImageNet layouts.

The demo and the tests train the real OpenMMLab datasets on these files, so
they run on a fresh machine without downloading anything. Each image holds a
few non-overlapping squares, circles and triangles of random size and colour
on a noisy background; the class is the shape, never the colour.

Each writer takes ``progress``: mmengine's progress bar over the images
written, by default only when stdout is a terminal, so that logs and the
tests' captured output stay free of bar redraws.
"""
import json
import sys
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import cv2
import numpy as np
from mmengine.utils import ProgressBar

SHAPE_CLASSES = ('square', 'circle', 'triangle')
#: ADE-style label ids: 0 is ADE's ignored "other", 1 the background
SEG_CLASSES = ('background', ) + SHAPE_CLASSES


def _polygon(kind: str, cx: float, cy: float, r: float,
             angle: float) -> np.ndarray:
    """Vertices (N, 2) of a shape centred at (cx, cy) with radius r."""
    corners = {'square': 4, 'triangle': 3, 'circle': 32}[kind]
    t = angle + np.arange(corners) * 2 * np.pi / corners
    return np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], 1)


def _sample_shapes(rng: np.random.Generator, size: int,
                   max_shapes: int) -> List[Tuple[int, np.ndarray]]:
    """Up to ``max_shapes`` non-overlapping (class index, polygon) pairs."""
    shapes, discs = [], []
    for _ in range(rng.integers(1, max_shapes + 1)):
        for _attempt in range(20):
            r = rng.uniform(0.1, 0.22) * size
            cx, cy = rng.uniform(r + 1, size - r - 1, 2)
            if all(np.hypot(cx - x, cy - y) > r + q + 2 for x, y, q in discs):
                break
        else:
            continue
        label = int(rng.integers(len(SHAPE_CLASSES)))
        poly = _polygon(SHAPE_CLASSES[label], cx, cy, r, rng.uniform(0, np.pi))
        shapes.append((label, poly))
        discs.append((cx, cy, r))
    return shapes


def _render(rng: np.random.Generator, size: int, max_shapes: int):
    """A BGR image, its ADE-style label map and its shapes."""
    base = rng.integers(0, 120, 3)
    img = np.clip(base + rng.normal(0, 18, (size, size, 3)), 0, 255)
    img = img.astype(np.uint8)
    label_map = np.ones((size, size), np.uint8)  # 1 = background
    shapes = _sample_shapes(rng, size, max_shapes)
    for label, poly in shapes:
        pts = np.round(poly).astype(np.int32)
        colour = [int(c) for c in rng.integers(130, 256, 3)]
        cv2.fillPoly(img, [pts], colour)
        cv2.fillPoly(label_map, [pts], label + 2)
    return img, label_map, shapes


def _splits(num_train: int, num_val: int) -> Dict[str, int]:
    return {'train': num_train, 'val': num_val}


def _progress_bar(total: int,
                  progress: Optional[bool]) -> Optional[ProgressBar]:
    """A bar over ``total`` images when asked for (``None``: when stdout is
    a terminal)."""
    if progress is None:
        progress = sys.stdout.isatty()
    return ProgressBar(total, file=sys.stdout) if progress and total else None


def _finish(bar: Optional[ProgressBar]) -> None:
    if bar is not None:
        bar.file.write('\n')
        bar.file.flush()


def write_coco_shapes(root, num_train: int = 48, num_val: int = 16,
                      image_size: int = 128, seed: int = 0,
                      max_shapes: int = 3,
                      progress: Optional[bool] = None) -> Dict[str, str]:
    """COCO layout: ``annotations/instances_{train,val}2017.json`` and
    ``{train,val}2017/*.png``; boxes, polygon masks, areas, iscrowd 0."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    paths = {}
    bar = _progress_bar(num_train + num_val, progress)
    for split, count in _splits(num_train, num_val).items():
        img_dir = root / f'{split}2017'
        img_dir.mkdir(parents=True, exist_ok=True)
        images, annotations = [], []
        for image_id in range(1, count + 1):
            img, _, shapes = _render(rng, image_size, max_shapes)
            name = f'{image_id:06d}.png'
            cv2.imwrite(str(img_dir / name), img)
            images.append(dict(id=image_id, file_name=name, width=image_size,
                               height=image_size))
            for label, poly in shapes:
                pts = np.round(poly).astype(np.int32)
                mask = np.zeros((image_size, image_size), np.uint8)
                cv2.fillPoly(mask, [pts], 1)
                ys, xs = np.nonzero(mask)
                x0, y0 = int(xs.min()), int(ys.min())
                annotations.append(dict(
                    id=len(annotations) + 1, image_id=image_id,
                    category_id=label + 1,
                    bbox=[x0, y0, int(xs.max()) - x0 + 1, int(ys.max()) - y0 + 1],
                    segmentation=[pts.astype(float).ravel().tolist()],
                    area=float(mask.sum()), iscrowd=0))
            if bar is not None:
                bar.update()
        ann_file = root / 'annotations' / f'instances_{split}2017.json'
        ann_file.parent.mkdir(parents=True, exist_ok=True)
        ann_file.write_text(json.dumps(dict(
            images=images, annotations=annotations,
            categories=[dict(id=i + 1, name=n, supercategory='shape')
                        for i, n in enumerate(SHAPE_CLASSES)])))
        paths[split] = str(ann_file)
    _finish(bar)
    return paths


def write_ade_shapes(root, num_train: int = 48, num_val: int = 16,
                     image_size: int = 128, seed: int = 0,
                     max_shapes: int = 3,
                     progress: Optional[bool] = None) -> Dict[str, str]:
    """ADEChallengeData2016 layout: ``images/{training,validation}/*.jpg``
    and ``annotations/{training,validation}/*.png`` label maps."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    paths = {}
    bar = _progress_bar(num_train + num_val, progress)
    for split, count in _splits(num_train, num_val).items():
        folder = {'train': 'training', 'val': 'validation'}[split]
        img_dir, ann_dir = root / 'images' / folder, root / 'annotations' / folder
        img_dir.mkdir(parents=True, exist_ok=True)
        ann_dir.mkdir(parents=True, exist_ok=True)
        for i in range(count):
            img, label_map, _ = _render(rng, image_size, max_shapes)
            name = f'ADE_{folder[:5]}_{i:08d}'
            cv2.imwrite(str(img_dir / f'{name}.jpg'), img,
                        [cv2.IMWRITE_JPEG_QUALITY, 95])
            cv2.imwrite(str(ann_dir / f'{name}.png'), label_map)
            if bar is not None:
                bar.update()
        paths[split] = str(img_dir)
    _finish(bar)
    return paths


def write_imagenet_shapes(root, num_train_per_class: int = 8,
                          num_val_per_class: int = 4, image_size: int = 64,
                          seed: int = 0,
                          progress: Optional[bool] = None) -> Dict[str, str]:
    """ImageNet layout: ``{train,val}/<class>/*.png`` and
    ``meta/{train,val}.txt`` (``<class>/<file> <label>`` per line); one shape
    per image."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    paths = {}
    (root / 'meta').mkdir(parents=True, exist_ok=True)
    bar = _progress_bar(
        (num_train_per_class + num_val_per_class) * len(SHAPE_CLASSES),
        progress)
    for split, per_class in _splits(num_train_per_class,
                                    num_val_per_class).items():
        lines = []
        for label, name in enumerate(SHAPE_CLASSES):
            (root / split / name).mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                img = np.clip(rng.integers(0, 120, 3) + rng.normal(
                    0, 18, (image_size, image_size, 3)), 0, 255).astype(np.uint8)
                r = rng.uniform(0.2, 0.35) * image_size
                cx, cy = rng.uniform(r + 1, image_size - r - 1, 2)
                pts = np.round(_polygon(name, cx, cy, r, rng.uniform(0, np.pi)))
                cv2.fillPoly(img, [pts.astype(np.int32)],
                             [int(c) for c in rng.integers(130, 256, 3)])
                # unique names: visualisers name drawings by file name
                file = f'{name}/{name}_{i:05d}.png'
                cv2.imwrite(str(root / split / file), img)
                lines.append(f'{file} {label}')
                if bar is not None:
                    bar.update()
        meta = root / 'meta' / f'{split}.txt'
        meta.write_text('\n'.join(lines) + '\n')
        paths[split] = str(meta)
    _finish(bar)
    return paths

