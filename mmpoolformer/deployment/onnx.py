"""ONNX export of any ``nn.Module`` returning a tensor or a tuple of tensors,
with a dynamic batch and spatial size, and its check in onnxruntime.

What the exported graph contains, and why:

* **standard operators**: under the exporters' tracing the backbones'
  blocks run their lean formulation (ordinary torch ops, the same
  function), never the eager oneDNN kernels, which have no ONNX form;
* **no GroupNorm operator**: ``nn.GroupNorm`` exports as Reshape +
  ``InstanceNormalization`` or, in newer opsets, ``GroupNormalization``,
  which TensorRT 10.x computes wrongly for one group. Every ``nn.GroupNorm``
  of the export copy (output norms, heads' norms; the blocks' norms are the
  lean formulation's already) is swapped for :class:`ExportGroupNorm`,
  which emits reductions and element-wise operators of every opset that
  every runtime computes alike. We do not use
  ``LayerNormalization`` over a flattened (B, C*H*W) view: its scale would
  have C*H*W entries (it cannot follow a dynamic spatial size, so the
  per-channel affine would stay separate anyway), it needs opset 17, and
  runtimes tune it for per-token sizes, not reductions over whole maps.

The user's model is never modified: export works on a deep copy.
"""
import copy
import importlib.util
import os
import os.path as osp
import re
import warnings
from typing import Dict, Iterable, Sequence, Tuple

import torch
import torch.nn as nn

#: opset of the exported graphs: the lowest the dynamo exporter writes
#: natively, read by TensorRT 8.6+, OpenVINO and onnxruntime alike
DEFAULT_OPSET = 18
INPUT_NAME = 'input'
AXIS_NAMES = {0: 'batch', 2: 'height', 3: 'width'}


def _require_onnx():
    """Check the optional packages up front: an install hint instead of an
    ImportError deep inside an export."""
    missing = [name for name in ('onnx', 'onnxscript', 'onnxruntime')
               if importlib.util.find_spec(name) is None]
    if missing:
        raise ImportError(f'ONNX export needs {", ".join(missing)}: pip '
                          'install onnx onnxscript onnxruntime')


class ExportGroupNorm(nn.Module):
    """``nn.GroupNorm`` in primitive operators (see the module docstring):
    :func:`mmpoolformer.models.backbones.algebra.group_norm`, the form the
    lean formulation uses. Shares the parameters of the norm it replaces;
    ``weight`` / ``bias`` may be None (folded away by
    ``switch_to_deploy``)."""

    def __init__(self, norm: nn.GroupNorm):
        super().__init__()
        self.num_groups = norm.num_groups
        self.eps = norm.eps
        self.weight = norm.weight
        self.bias = norm.bias

    def forward(self, x):
        from mmpoolformer.models.backbones.algebra import group_norm
        return group_norm(x, self.num_groups, self.eps, self.weight,
                          self.bias)


def swap_group_norms_(model: nn.Module) -> int:
    """Replace every ``nn.GroupNorm`` (subclasses included) in ``model`` by
    an :class:`ExportGroupNorm`, in place; return how many."""
    swapped = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.GroupNorm):
                setattr(parent, name, ExportGroupNorm(child))
                swapped += 1
    return swapped


def switched_to_deploy(model: nn.Module) -> Tuple[nn.Module, bool]:
    """A deep copy of ``model`` with its backbone (``model.backbone``, or
    the model itself) folded by ``switch_to_deploy()``, and whether it had
    one: the structure to export, the model as trained left untouched."""
    model = copy.deepcopy(model)
    backbone = getattr(model, 'backbone', model)
    if not hasattr(backbone, 'switch_to_deploy'):
        return model, False
    backbone.switch_to_deploy()
    return model, True


def prepare_for_export(model: nn.Module) -> nn.Module:
    """An eval-mode deep copy without GroupNorm operators, computing the
    same function as ``model``."""
    model = copy.deepcopy(model)
    model.eval()  # not chained: some train() overrides return None
    if isinstance(model, nn.GroupNorm):  # a bare norm has no parent
        model = ExportGroupNorm(model)
    swap_group_norms_(model)
    return model


class ClassifierLogits(nn.Module):
    """An mmpretrain classifier as ``image -> logits``: ``extract_feat``
    then the head's forward (no softmax, no data preprocessor: feed
    normalised images, as the Runner's preprocessor makes them)."""

    def __init__(self, classifier: nn.Module):
        super().__init__()
        if not (hasattr(classifier, 'extract_feat') and
                getattr(classifier, 'head', None) is not None):
            raise TypeError(f'{type(classifier).__name__} is not a classifier '
                            'with extract_feat and a head')
        self.classifier = classifier

    def forward(self, x):
        return self.classifier.head(self.classifier.extract_feat(x))


def _device(model: nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device('cpu')


def _as_tuple(out) -> Tuple[torch.Tensor, ...]:
    outs = out if isinstance(out, (tuple, list)) else (out, )
    if not outs or not all(isinstance(o, torch.Tensor) for o in outs):
        raise TypeError('ONNX export needs a model returning a tensor or a '
                        f'tuple of tensors, got {type(out).__name__}')
    return tuple(outs)


def output_names(num: int) -> list:
    """``['output']`` for one tensor, ``['output0', 'output1', ...]``."""
    return ['output'] if num == 1 else [f'output{i}' for i in range(num)]


def _name_dims(proto, symbols: Dict[str, str]):
    """Rename the exporter's shape symbols (``s77``) to ``batch``, ``height``
    and ``width`` everywhere, also inside output expressions such as
    ``((height - 3)//4) + 1``, so the graph reads like its documentation."""
    if not symbols:
        return
    pattern = re.compile(r'\b(' + '|'.join(map(re.escape, symbols)) + r')\b')
    values = list(proto.graph.input) + list(proto.graph.output) + \
        list(proto.graph.value_info)
    for value in values:
        for dim in value.type.tensor_type.shape.dim:
            if dim.HasField('dim_param'):
                dim.dim_param = pattern.sub(lambda m: symbols[m.group(1)],
                                            dim.dim_param)


def _export_dynamo(model, x, path, names, dynamic, opset):
    import onnx
    D = torch.export.Dim
    shapes = {'x': {i: D.DYNAMIC for i in AXIS_NAMES}} if dynamic else None
    # DYNAMIC, not named Dims: torch.export may add guards (a stage map is
    # not 1x1) that named Dims turn into hard errors; the ONNX ops have none
    wrapped = _Positional(model)
    wrapped.eval()
    program = torch.onnx.export(
        wrapped, (x, ), None, dynamo=True, opset_version=opset,
        input_names=[INPUT_NAME], output_names=names, dynamic_shapes=shapes,
        verbose=False)
    proto = program.model_proto
    if dynamic:
        dims = proto.graph.input[0].type.tensor_type.shape.dim
        _name_dims(proto, {dims[i].dim_param: name
                           for i, name in AXIS_NAMES.items()
                           if dims[i].HasField('dim_param')})
    onnx.save(proto, path)


def _export_torchscript(model, x, path, names, dynamic, opset, ndims):
    axes = None
    if dynamic:  # the batch, and every axis of a map after the channels
        axes = {INPUT_NAME: AXIS_NAMES}
        axes.update({n: {0: 'batch', **{i: f'{n}_{AXIS_NAMES.get(i, i)}'
                                        for i in range(2, ndim)}}
                     for n, ndim in zip(names, ndims)})
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # deprecation and tracer warnings
        torch.onnx.export(model, (x, ), path, dynamo=False,
                          opset_version=opset, input_names=[INPUT_NAME],
                          output_names=names, dynamic_axes=axes)


class _Positional(nn.Module):
    """Call ``model(x)`` with the argument named ``x``, whatever the model
    calls it, so that one ``dynamic_shapes`` spec fits every model."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x)


def export_onnx(model: nn.Module,
                path: str,
                input_shape: Sequence[int] = (1, 3, 224, 224),
                dynamic: bool = True,
                opset: int = DEFAULT_OPSET,
                dynamo: bool = True) -> str:
    """Export ``model`` (untouched: see :func:`prepare_for_export`) to
    ``path``; return the exporter used (``'dynamo'`` or ``'torchscript'``).

    ``dynamic`` makes the batch, height and width of the input ``input``
    dynamic. The graph is traced with ``input_shape`` (a batch of at least
    2 when dynamic: torch.export treats a size-1 axis as the constant 1).
    The ``torch.export``-based exporter is tried first; if it fails the
    TorchScript exporter is used, with a warning naming the reason.
    """
    _require_onnx()
    if len(input_shape) != 4:
        raise ValueError(f'input_shape must be (N, C, H, W), got {input_shape}')
    model = prepare_for_export(model)
    shape = list(input_shape)
    if dynamic:
        shape[0] = max(shape[0], 2)
    x = torch.randn(shape, device=_device(model))
    with torch.no_grad():
        ndims = [o.dim() for o in _as_tuple(model(x))]
    names = output_names(len(ndims))
    folder = osp.dirname(osp.abspath(path))
    os.makedirs(folder, exist_ok=True)
    if dynamo:
        try:
            _export_dynamo(model, x, path, names, dynamic, opset)
            return 'dynamo'
        except Exception as exc:  # any exporter failure: try the other one
            reason = str(exc).strip().splitlines()
            warnings.warn('torch.export-based ONNX export failed '
                          f'({type(exc).__name__}: '
                          f'{reason[0] if reason else ""}); falling back to '
                          'the TorchScript exporter')
    _export_torchscript(model, x, path, names, dynamic, opset, ndims)
    return 'torchscript'


def ort_session(path: str, providers: Sequence[str] = ('CPUExecutionProvider',
                                                       ),
                threads: int = 0, spinning: bool = True):
    """An onnxruntime session of ``path`` (``threads`` 0: its default).

    ``spinning=False`` stops its idle threads from busy-waiting after a run;
    needed when timing it interleaved with another runtime on the same
    cores, which the spinning threads would otherwise slow down."""
    _require_onnx()
    import onnxruntime as ort
    if not osp.isfile(path):
        raise FileNotFoundError(f'ONNX file {path} does not exist')
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3  # errors only
    if not spinning:
        options.add_session_config_entry('session.intra_op.allow_spinning',
                                         '0')
    return ort.InferenceSession(str(path), options,
                                providers=list(providers))


def run_session(session, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
    """The session's outputs for ``x``, as tensors."""
    name = session.get_inputs()[0].name
    outs = session.run(None, {name: x.detach().cpu().numpy()})
    return tuple(torch.from_numpy(o) for o in outs)


def verify(model: nn.Module, path, sizes: Iterable[Sequence[int]],
           seed: int = 0, session=None) -> Dict[Tuple[int, ...], float]:
    """``{input shape: max abs difference}`` between the ONNX file (or an
    open ``session`` of it) and ``model`` in eval mode, over all outputs,
    on a random input of each of ``sizes`` ((N, C, H, W) each). ``model``
    is the reference as given (e.g. in its own formulation, not folded)."""
    session = session or ort_session(path)
    gen = torch.Generator().manual_seed(seed)
    was_training = model.training
    model.eval()
    diffs = {}
    try:
        for size in sizes:
            size = tuple(int(s) for s in size)
            x = torch.randn(size, generator=gen)
            with torch.no_grad():
                ref = tuple(r.cpu() for r in _as_tuple(
                    model(x.to(_device(model)))))
            got = run_session(session, x)
            if len(got) != len(ref):
                raise ValueError(f'{path} has {len(got)} outputs, the model '
                                 f'{len(ref)}')
            for i, (a, b) in enumerate(zip(got, ref)):
                if a.shape != b.shape:
                    raise ValueError(
                        f'output {i} of {path} for input {size} has shape '
                        f'{tuple(a.shape)}, the model gives {tuple(b.shape)}')
            diffs[size] = max((a - b.float()).abs().max().item()
                              for a, b in zip(got, ref))
    finally:
        model.train(was_training)
    return diffs
