"""Steps to time and the interleaved loop that times them.

Every repetition runs one step of every row, starting from a different row
each time, so that the noise of a shared machine hits all rows alike;
results are medians. Modes are timed one after the other. On CUDA a step is
timed with CUDA events between synchronisations (the kernels' time, not the
launch queue's), elsewhere with the wall clock.
"""
import contextlib
import statistics
import time

import torch
from mmengine.utils import track_iter_progress


def autocast(dtype: str, device: str):
    """``fp32``: nothing; ``bf16``: bfloat16 autocast; ``amp``: float16
    autocast on CUDA (bfloat16 on CPU, which has no fp16 autocast)."""
    if dtype == 'fp32':
        return contextlib.nullcontext()
    low = torch.float16 if (dtype == 'amp' and is_cuda(device)) \
        else torch.bfloat16
    return torch.autocast(torch.device(device).type, dtype=low)


def is_cuda(device) -> bool:
    return torch.device(device).type == 'cuda'


def time_ms(fn, device) -> float:
    """Milliseconds of one call of ``fn``, all its device work included."""
    if is_cuda(device):
        torch.cuda.synchronize(device)
        start, end = (torch.cuda.Event(enable_timing=True) for _ in range(2))
        start.record()
        fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end)
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1e3


def backbone_steps(model, x, dtype, device):
    """``{'infer': fn, 'train': fn}`` for a backbone returning feature maps:
    training is forward, ``sum(mean(map))``, backward and an AdamW step."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4) if params else None

    def infer():
        model.eval()
        with torch.inference_mode(), autocast(dtype, device):
            model(x)

    def train():
        model.train()
        opt.zero_grad(set_to_none=True)
        with autocast(dtype, device):
            loss = sum(o.float().mean() for o in model(x))
        loss.backward()
        opt.step()

    return dict(infer=infer, train=train)


def detector_steps(model, inputs, samples, dtype, device):
    """``{'train': fn, 'infer': fn}``: the model's losses, their sum,
    backward, AdamW; inference: the model's tensor forward (backbone, neck,
    heads; the post-processing after it is the same code for every row)."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def infer():
        model.eval()
        with torch.inference_mode(), autocast(dtype, device):
            return model._forward(inputs)

    def train():
        model.train()
        opt.zero_grad(set_to_none=True)
        with autocast(dtype, device):
            loss, _ = model.parse_losses(model.loss(inputs, samples))
        loss.backward()
        opt.step()

    return dict(train=train, infer=infer)


def interleaved_medians(steps: dict, modes, reps: int, warmup: int,
                        device: str = 'cpu') -> dict:
    """``{row: {mode: {'median_ms', 'all_ms'}}}`` over ``reps`` rounds;
    ``steps`` is ``{row: {mode: fn}}`` (a row may lack a mode)."""
    rows = list(steps)
    times = {r: {m: [] for m in modes if m in steps[r]} for r in rows}

    def round_(mode, rep, record):
        order = rows[rep % len(rows):] + rows[:rep % len(rows)]
        for row in order:
            fn = steps[row].get(mode)
            if fn is None:
                continue
            ms = time_ms(fn, device)
            if record:
                times[row][mode].append(ms)

    # one mode after the other: inference is timed on unchanging weights,
    # as in deployment, not right after an optimizer step
    for mode in modes:
        if warmup:
            print(f'{mode} warm-up: {warmup} rounds over {len(rows)} rows')
            for rep in track_iter_progress(list(range(warmup))):
                round_(mode, rep, False)
        print(f'{mode}: {reps} interleaved rounds')
        for rep in track_iter_progress(list(range(reps))):
            round_(mode, rep, True)
    return {r: {m: dict(median_ms=statistics.median(v), all_ms=v)
                for m, v in t.items()} for r, t in times.items()}
