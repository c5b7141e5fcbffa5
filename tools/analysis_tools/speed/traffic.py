"""Memory traffic of eager execution, counted at the dispatcher.

On a GPU a MetaFormer's norms, pooling and element-wise ops are bound by
memory bandwidth, and in eager mode every ATen op reads its inputs from and
writes its outputs to device memory. :class:`OpBytes` adds up, for every
op, the bytes of its distinct input tensors and of its outputs (views and
other aliases move nothing); run on 'meta' tensors it needs no device and
no data, and the model takes the path it takes on a GPU (the fused CPU
kernels only run on CPU tensors). The count is the traffic of the
op sequence, not of a kernel's internals (a GroupNorm reads its input
twice; a GEMM may re-read tiles): a proxy for eager GPU time that can be
measured anywhere.
"""
import math

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten


def tensor_bytes(t: torch.Tensor) -> int:
    """Bytes of the distinct elements of ``t`` (a broadcast dimension,
    stride 0, is read once)."""
    distinct = math.prod(n for n, s in zip(t.shape, t.stride()) if s != 0)
    return distinct * t.element_size() if t.numel() else 0


#: ops that return a view without saying so in their schema
_UNANNOTATED_VIEWS = {'_unsafe_view', 'lift_fresh'}


def _aliases_output(func) -> bool:
    if func.overloadpacket.__name__ in _UNANNOTATED_VIEWS:
        return True
    schema = getattr(func, '_schema', None)
    return schema is not None and any(
        r.alias_info is not None and not r.alias_info.is_write
        for r in schema.returns)


class OpBytes(TorchDispatchMode):
    """``with OpBytes() as c: model(x)`` then ``c.read``, ``c.written``
    (bytes) and ``c.by_op`` (op name -> bytes moved)."""

    def __init__(self):
        super().__init__()
        self.read = self.written = 0
        self.by_op = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = [t for t in tree_flatten((args, kwargs))[0]
                  if isinstance(t, torch.Tensor)]
        if _aliases_output(func) or any(o is t for o in tree_flatten(out)[0]
                                        for t in inputs):
            return out  # a view, or an input returned as is (dropout off)
        seen, read = set(), 0
        for t in inputs:
            if id(t) not in seen:
                seen.add(id(t))
                read += tensor_bytes(t)
        written = sum(tensor_bytes(t) for t in tree_flatten(out)[0]
                      if isinstance(t, torch.Tensor))
        self.read += read
        self.written += written
        name = func.overloadpacket.__name__
        self.by_op[name] = self.by_op.get(name, 0) + read + written
        return out

    @property
    def total(self) -> int:
        return self.read + self.written


def forward_bytes(model: torch.nn.Module, shape, dtype=torch.float32) -> dict:
    """Bytes per image of ``model``'s inference forward on a 'meta' input
    of ``shape`` (the model is moved to 'meta': pass a copy)."""
    model.to('meta')
    model.eval()  # not chained: mmpretrain's train() returns None
    x = torch.empty(shape, dtype=dtype, device='meta')
    with torch.inference_mode(), OpBytes() as counter:
        model(x)
    images = shape[0]
    return dict(read=counter.read / images, written=counter.written / images,
                total=counter.total / images,
                by_op={k: v / images for k, v in sorted(
                    counter.by_op.items(), key=lambda kv: -kv[1])})


#: the GPU table's batch: the folded weights are made once per call, so
#: their traffic per image depends on the batch
TRAFFIC_BATCH = 128
#: rows counted: ours (the lean formulation off the CPU), the plain one
#: and the references where present
TRAFFIC_ROWS = ('ours', 'ours-plain', 'mmpretrain', 'timm')


def eager_traffic(models: dict, size: int, batch: int = TRAFFIC_BATCH) -> dict:
    """Per-image forward traffic of the eager rows in ``models`` (copies,
    on 'meta'), with ``lean / plain`` = ours / ours-plain."""
    import copy
    rows = {name: forward_bytes(copy.deepcopy(models[name]),
                                (batch, 3, size, size))
            for name in TRAFFIC_ROWS if name in models}
    out = dict(batch=batch, size=size, rows=rows)
    if 'ours' in rows and 'ours-plain' in rows:
        out['lean_vs_plain'] = rows['ours']['total'] / \
            rows['ours-plain']['total']
    return out


def format_traffic(traffic: dict) -> str:
    lines = [f'eager forward memory traffic per image (dispatcher count on '
             f'meta tensors, batch {traffic["batch"]} at '
             f'{traffic["size"]}², what a GPU runs):']
    for name, r in traffic['rows'].items():
        top = ', '.join(f'{op} {b / 2**20:.1f}'
                        for op, b in list(r['by_op'].items())[:5])
        lines.append(f'  {name:<11} {r["total"] / 2**20:7.1f} MiB '
                     f'(read {r["read"] / 2**20:.1f}, written '
                     f'{r["written"] / 2**20:.1f}; {top})')
    if 'lean_vs_plain' in traffic:
        lines.append(f'  lean / plain: {traffic["lean_vs_plain"]:.3f}')
    return '\n'.join(lines)
