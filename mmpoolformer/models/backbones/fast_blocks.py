"""The fast formulation: fused channels-last twins of the block and the
downsampling, swapped in by :func:`convert_blocks`.

A twin is a subclass holding the very same submodules and Parameters (the
state dict, hooks and ``isinstance`` checks do not change). In eager mode on
CPU it runs the fused kernels of :mod:`.fused_ops` on channels-last maps:
the pooling identity, norm affines and layer scales folded into the MLP
GEMMs (recomputed from the live Parameters at every call: nothing is cached),
activations recomputed in backward. Everywhere else -- under
``torch.compile`` / ``torch.export`` (dynamo), ``torch.jit.trace``,
``torch.fx``, on CUDA or any other device, for tensor subclasses -- a block
computes the lean formulation of :mod:`.lean` in standard torch ops, which
compilers, tracers and FLOP counters see. A block whose submodules carry
hooks (or while global module hooks are registered) runs its plain parent's
forward, so every hook fires on the tensors it expects.
"""
from typing import Optional

import torch
import torch.nn as nn

from . import lean
from .blocks import MetaFormerBlock
from .fused_ops import linear, norm_mlp, pool_mix, sep_conv_mix, to_nchw, to_nhwc
from .layers import Downsampling, StarReLU, matrix, norm_kind, scale_vector
from .lean import autocast_enabled, drops, gemm_dtype, has_hooks, in_graph_capture, keep_factor
from .token_mixers import Affine, Attention, IdentityMixer, Pooling, SepConv

Tensor = torch.Tensor


def fused_kernels_apply(x) -> bool:
    """Whether the eager fused kernels run on ``x``: a plain CPU tensor,
    outside compilers and tracers."""
    return not in_graph_capture(x) and type(x) is torch.Tensor and \
        x.device.type == 'cpu'


# ----------------------------------------------------- channels-last pieces
def norm_channels_last(norm: nn.Module, x: Tensor) -> Tensor:
    """``norm`` applied to a (B, H, W, C) map or (B, N, C) tokens."""
    kind = norm_kind(norm)
    if kind == 'none':
        return x
    if kind == 'layer':
        return torch.nn.functional.layer_norm(x, norm.normalized_shape,
                                              norm.weight, norm.bias, norm.eps)
    # GroupNorm and the BatchNorms keep a channels-last input channels-last
    return to_nhwc(norm(to_nchw(x)))


def _sep_conv(mixer: SepConv, x: Tensor) -> Tensor:
    # 1x1 convolutions as GEMMs on (B*H*W, C), the depthwise one on a
    # channels-last view: no layout change anywhere
    shape = x.shape
    x = x.reshape(-1, shape[-1])
    w1, b1, act = matrix(mixer.pwconv1), mixer.pwconv1.bias, mixer.act1
    if torch.is_grad_enabled():
        x = act(torch.nn.functional.linear(x, w1, b1))
    else:  # StarReLU in place after a GEMM with the ReLU fused
        x = linear(x.to(gemm_dtype(x)), w1, b1, 'relu')
        x = x.square_().mul_(act.scale).add_(act.bias)
    x = to_nhwc(mixer.dwconv(to_nchw(x.reshape(*shape[:-1], -1))))
    # oneDNN's matmul has no autograd: only without it
    project = torch.nn.functional.linear if torch.is_grad_enabled() else linear
    return project(x.reshape(-1, x.shape[-1]), matrix(mixer.pwconv2),
                   mixer.pwconv2.bias).reshape(*shape[:-1], -1)


def mixer_channels_last(mixer: nn.Module, x: Tensor) -> Tensor:
    """A token mixer on a (B, H, W, C) map (or (B, N, C) tokens): its
    channels-last formula where it has one, else its NCHW forward on a
    channels-last view."""
    if isinstance(mixer, (IdentityMixer, nn.Identity)):
        return x
    if isinstance(mixer, Affine):
        return torch.addcmul(mixer.affine.bias, x,
                             mixer.affine.weight.reshape(-1) - 1)
    if isinstance(mixer, SepConv):
        return _sep_conv(mixer, x)
    if isinstance(mixer, Attention):
        return mixer.attend(x.flatten(1, -2)).reshape(x.shape)
    return to_nhwc(mixer(to_nchw(x)))


def act_kind(act: nn.Module) -> Optional[str]:
    """The activation's name in :func:`fused_ops.norm_mlp`, or None."""
    if isinstance(act, StarReLU):
        return 'star_relu'
    if isinstance(act, nn.GELU) and act.approximate == 'none':
        return 'gelu'
    if isinstance(act, nn.ReLU):
        return 'relu'
    return None


def _scaled(layer: nn.Module, ls: Optional[Tensor]):
    """``layer``'s (weight matrix, bias) with the layer scale ``ls`` that
    follows it folded in, from the live Parameters (differentiable; redone
    at every call, nothing is cached)."""
    w, b = matrix(layer), layer.bias
    if ls is not None:
        w = w * ls[:, None]
        b = None if b is None else b * ls
    return w, b


def _fused_sep_conv(mixer: nn.Module, norm: nn.Module, x: Tensor) -> bool:
    """Whether :func:`fused_ops.sep_conv_mix` computes ``mixer(norm(x))``:
    a SepConv with StarReLU and a stride-1 'same' depthwise convolution."""
    if not isinstance(mixer, SepConv) or not isinstance(mixer.act1, StarReLU) \
            or norm_kind(norm) is None:
        return False
    dw = mixer.dwconv
    return dw.stride == (1, 1) and dw.dilation == (1, 1) and \
        dw.padding == (dw.kernel_size[0] // 2, dw.kernel_size[1] // 2) and \
        dw.groups == dw.in_channels == dw.out_channels and \
        dw.padding_mode == 'zeros'


# ------------------------------------------------------------ fused twins
class FastMetaFormerBlock(MetaFormerBlock):
    """:class:`MetaFormerBlock` computed by the fused channels-last formulas
    in eager CPU mode (see the module docstring). Takes and returns what
    the plain block does: NCHW maps (channels-last in memory) or tokens."""

    def forward(self, x: Tensor) -> Tensor:
        if has_hooks(self):
            return super().forward(x)  # the plain modules: hooks see them
        if not fused_kernels_apply(x):
            return lean.block_forward(self, x)
        if x.dim() == 3:  # (B, N, C) tokens already are channels-last
            return self.forward_channels_last(x)
        return to_nchw(self.forward_channels_last(to_nhwc(x)))

    def forward_channels_last(self, x: Tensor) -> Tensor:
        x = self._mixer_channels_last(x)
        return self._mlp_channels_last(x) if self.has_mlp else x

    def _mixer_channels_last(self, x: Tensor) -> Tensor:
        ls, res = scale_vector(self.layer_scale1), scale_vector(self.res_scale1)
        if isinstance(self.token_mixer, Pooling) and self.residual and \
                norm_kind(self.norm1) == 'group':
            if autocast_enabled(x.device.type):
                # the residual stream stays fp32 (the plain ops' is fp32
                # after a layer scale, bf16 without one)
                x = x.float()
            # pool(GN(x)) - GN(x) == gamma / sigma * (pool(x) - x)
            gamma = self.norm1.weight
            k = x.new_ones(x.shape[-1]) if gamma is None else gamma
            k = k if ls is None else k * ls
            k = k.expand(x.shape[0], -1)
            keep = keep_factor(self.drop_path, x)
            if keep is not None:
                k = k * keep.reshape(-1, 1)
            return pool_mix(x, k, res, self.norm1.bias,
                            self.token_mixer.pool_size, self.norm1.eps,
                            gemm_dtype(x))
        if torch.is_grad_enabled() and _fused_sep_conv(self.token_mixer,
                                                       self.norm1, x):
            return self._residual(x, res, self._sep_conv_branch(x, ls), None)
        branch = mixer_channels_last(self.token_mixer,
                                     norm_channels_last(self.norm1, x))
        return self._residual(x, res, branch, ls)

    def _sep_conv_branch(self, x: Tensor, ls: Optional[Tensor]) -> Tensor:
        mixer, norm = self.token_mixer, self.norm1
        kind = norm_kind(norm)
        affine = (norm.weight, norm.bias) if kind != 'none' else (None, None)
        w2, b2 = _scaled(mixer.pwconv2, ls)
        return sep_conv_mix(
            x, matrix(mixer.pwconv1), mixer.pwconv1.bias,
            (mixer.act1.scale, mixer.act1.bias), mixer.dwconv.weight,
            mixer.dwconv.bias, w2, b2, None if kind == 'none' else kind,
            getattr(norm, 'eps', 0.), affine, gemm_dtype(x))

    def _residual(self, x, res, branch, ls):
        if ls is not None:
            branch = branch * ls
        if not self.residual:
            return branch
        keep = keep_factor(self.drop_path, branch)
        if keep is not None:
            branch = branch * keep
        return branch + (x if res is None else x * res)

    def _mlp_channels_last(self, y: Tensor) -> Tensor:
        mlp = self.mlp
        kind, act = norm_kind(self.norm2), act_kind(mlp.act)
        ls, res = scale_vector(self.layer_scale2), scale_vector(self.res_scale2)
        if kind is None or act is None or (self.training and mlp.drop.p > 0):
            h = torch.nn.functional.linear(norm_channels_last(self.norm2, y),
                                           matrix(mlp.fc1), mlp.fc1.bias)
            branch = torch.nn.functional.linear(
                mlp.drop(mlp.act(h)), matrix(mlp.fc2), mlp.fc2.bias)
            return self._residual(y, res, mlp.drop(branch), ls)
        w1, b1 = matrix(mlp.fc1), mlp.fc1.bias
        w2, b2 = _scaled(mlp.fc2, ls)
        act_params = (mlp.act.scale, mlp.act.bias) if act == 'star_relu' \
            else (None, None)
        norm = None if kind == 'none' else kind
        affine = (self.norm2.weight, self.norm2.bias) if norm else (None, None)
        eps = getattr(self.norm2, 'eps', 0.)

        def branch(residual=None):  # the layer scale is folded into w2
            return norm_mlp(y, w1, b1, w2, b2, act, act_params, norm, eps,
                            residual, affine, gemm_dtype(y))

        if not self.residual:
            return branch()
        if not drops(self.drop_path):
            return branch(y if res is None else y * res)
        return self._residual(y, res, branch(), None)


class FastDownsampling(Downsampling):
    """:class:`Downsampling` on channels-last maps in eager CPU mode: the
    norm over C without a layout change, the convolution channels-last."""

    def forward(self, x: Tensor) -> Tensor:
        if not fused_kernels_apply(x) or has_hooks(self):
            return super().forward(x)
        x = to_nhwc(x)
        if self.norm_first:
            x = norm_channels_last(self.norm, x)
        x = to_nhwc(self.conv(to_nchw(x)))
        if not self.norm_first:
            x = norm_channels_last(self.norm, x)
        return to_nchw(x)


FAST_TWINS = {MetaFormerBlock: FastMetaFormerBlock,
              Downsampling: FastDownsampling}
PLAIN_OF = {fast: plain for plain, fast in FAST_TWINS.items()}


def _recast(module: nn.Module, cls: type) -> nn.Module:
    """``module`` as an instance of its twin class ``cls``: the same
    submodules, Parameters, buffers, hooks and attributes."""
    twin = cls.__new__(cls)
    twin.__dict__.update(module.__dict__)
    return twin


def convert_blocks(model: nn.Module, fast: bool) -> nn.Module:
    """Swap every block and downsampling of ``model`` (in place) for its
    fused twin (``fast=True``) or back to the plain class. The state dict
    and the function do not change. Returns ``model``."""
    table = FAST_TWINS if fast else PLAIN_OF
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            twin = table.get(type(child))
            if twin is not None:
                setattr(parent, name, _recast(child, twin))
    return model
