"""How far two runtimes' predictions of the same image are apart, in the
units each task's users judge them by, and the configs' metric of any
model with a ``test_step`` (PyTorch or a deployed backend model).

Detections are matched, not compared by rank: two runtimes may order boxes
of equal score differently, and NMS may keep a different one of two
near-duplicates that score alike. Every PyTorch detection at or above
``score_floor`` must have a deployed one of the same label that overlaps
it (IoU) and scores the same; masks are compared on those matched pairs.
"""
from typing import Callable, Dict, Iterable

import torch

#: the metric each codebase's evaluator reports first (the tools print it)
MAIN_METRIC = {'mmdet': 'coco/bbox_mAP', 'mmseg': 'mIoU',
               'mmpretrain': 'accuracy/top1'}

#: the default bounds :func:`check` applies (what the deployment tests and
#: ``tools/deployment/deploy.py`` require)
TOLERANCES = dict(
    box_iou=0.99,          # the worst matched box IoU, at least
    score=1e-3,            # the largest score difference of a match
    unmatched=0,           # PyTorch detections >= score_floor left unmatched
    mask_iou=0.98,         # the worst matched mask IoU, at least
    pixels=0.999,          # the share of equal label-map pixels, at least
    class_score=1e-4,      # the largest class-score difference
)


def _box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pairwise IoU of (N, 4) and (M, 4) x1y1x2y2 boxes."""
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area_a = (a[:, 2:] - a[:, :2]).clamp(min=0).prod(-1)
    area_b = (b[:, 2:] - b[:, :2]).clamp(min=0).prod(-1)
    return inter / (area_a[:, None] + area_b[None, :] - inter).clamp(min=1e-9)


def _mask_iou(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.bool(), b.bool()
    union = (a | b).sum().item()
    return 1.0 if union == 0 else (a & b).sum().item() / union


def detection_agreement(reference, deployed, score_floor: float = 0.3
                        ) -> Dict[str, float]:
    """Figures for two mmdet ``pred_instances``: ``matched`` / ``unmatched``
    reference detections at or above ``score_floor``, the worst ``box_iou``
    and largest ``score`` difference of a match, and ``mask_iou`` where both
    have masks."""
    keep = reference.scores >= score_floor
    ref_boxes, ref_scores = reference.bboxes[keep], reference.scores[keep]
    ref_labels = reference.labels[keep]
    out = dict(matched=0, unmatched=0, box_iou=1.0, score=0.0)
    masks = 'masks' in reference and 'masks' in deployed
    if masks:
        out['mask_iou'] = 1.0
        ref_masks = reference.masks[keep]
    if len(ref_boxes) == 0:
        return out
    iou = _box_iou(ref_boxes.float(), deployed.bboxes.float())
    iou[ref_labels[:, None] != deployed.labels[None, :]] = 0
    for i in range(len(ref_boxes)):
        best = int(iou[i].argmax()) if iou.shape[1] else -1
        if best < 0 or iou[i, best] <= 0.5:
            out['unmatched'] += 1
            continue
        out['matched'] += 1
        out['box_iou'] = min(out['box_iou'], float(iou[i, best]))
        out['score'] = max(out['score'], abs(
            float(ref_scores[i]) - float(deployed.scores[best])))
        if masks:
            out['mask_iou'] = min(out['mask_iou'], _mask_iou(
                ref_masks[i], deployed.masks[best]))
    return out


def label_map_agreement(reference, deployed) -> Dict[str, float]:
    """``pixels``: the share of pixels two mmseg ``pred_sem_seg`` agree on."""
    a, b = reference.data, deployed.data
    if a.shape != b.shape:
        return dict(pixels=0.0)
    return dict(pixels=(a == b).float().mean().item())


def class_agreement(reference, deployed) -> Dict[str, float]:
    """``class_score``: the largest difference of two mmpretrain
    ``pred_score`` vectors; ``same_label``: 1.0 when the top classes agree."""
    return dict(
        class_score=(reference.pred_score.float() -
                     deployed.pred_score.float()).abs().max().item(),
        same_label=float(int(reference.pred_label) == int(
            deployed.pred_label)))


def prediction_agreement(reference, deployed, score_floor: float = 0.3
                         ) -> Dict[str, float]:
    """The figures for two data samples of any of the three tasks."""
    if 'pred_instances' in reference:
        return detection_agreement(reference.pred_instances,
                                   deployed.pred_instances, score_floor)
    if 'pred_sem_seg' in reference:
        return label_map_agreement(reference.pred_sem_seg,
                                   deployed.pred_sem_seg)
    if 'pred_score' in reference:
        return class_agreement(reference, deployed)
    raise TypeError('a data sample with pred_instances, pred_sem_seg or '
                    f'pred_score was expected, got {sorted(reference.keys())}')


def worst(figures: Iterable[Dict[str, float]]) -> Dict[str, float]:
    """The worst of each figure over several images (counts are summed)."""
    out = {}
    for fig in figures:
        for key, value in fig.items():
            if key not in out:
                out[key] = value
            elif key in ('matched', 'unmatched'):
                out[key] += value
            elif key in ('score', 'class_score'):
                out[key] = max(out[key], value)
            else:
                out[key] = min(out[key], value)
    return out


def check(figures: Dict[str, float], tolerances: Dict[str, float] = None
          ) -> list:
    """The figures outside ``tolerances`` (default :data:`TOLERANCES`), as
    readable sentences; empty when the predictions agree."""
    tol = dict(TOLERANCES, **(tolerances or {}))
    bad = []
    for key in ('score', 'class_score', 'unmatched'):
        if key in figures and figures[key] > tol[key]:
            bad.append(f'{key} {figures[key]:.3g} > {tol[key]:.3g}')
    for key in ('box_iou', 'mask_iou', 'pixels'):
        if key in figures and figures[key] < tol[key]:
            bad.append(f'{key} {figures[key]:.4f} < {tol[key]}')
    if figures.get('same_label', 1.0) < 1.0:
        bad.append('the top class differs')
    return bad


@torch.no_grad()
def evaluate_model(test_step: Callable, dataloader, evaluator) -> dict:
    """The evaluator's metrics of ``test_step(data_batch) -> data samples``
    (a model's ``test_step``: PyTorch or mmdeploy's backend model) over
    ``dataloader``."""
    evaluator.dataset_meta = dataloader.dataset.metainfo
    for data in dataloader:
        evaluator.process(data_samples=test_step(data), data_batch=data)
    return evaluator.evaluate(len(dataloader.dataset))
