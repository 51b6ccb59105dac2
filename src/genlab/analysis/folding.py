"""Batch norm folded into the layer that feeds it, and the path norm of the folded network.

Jiang et al. 2020 compute norm-based measures on the network with each batch norm (eval mode: a per-channel affine
map) folded into its conv. Their reference code folds into "the previous module in module order" and into a conv bias;
genlab's convs before a norm have no bias, and in a ResNet the module after a block's last norm (in `named_modules`
order) is the shortcut's conv, not the layer that feeds the norm. So the feeding layer is found in the traced graph:
a batch norm whose input is a conv or linear layer used by nothing else is folded into it (which gains a bias); any
other batch norm (pre-activation nets normalise a sum) becomes the equivalent depthwise 1x1 conv. Either way the
folded network computes what the original computes in eval mode.
"""
from __future__ import annotations

import copy

import torch
import torch.fx as fx
from torch import nn

# Path norm sums products of weights along paths: it describes networks whose units are positively homogeneous,
# which an all-ones input through squared weights reaches only through these activations (identity on x >= 0).
HOMOGENEOUS_ACTIVATIONS = (nn.ReLU, nn.LeakyReLU)
NOT_HOMOGENEOUS = (nn.ELU, nn.GELU, nn.Tanh, nn.Sigmoid, nn.GroupNorm, nn.LayerNorm, nn.InstanceNorm2d)


class LayerTracer(fx.Tracer):
    """torch.fx's tracer, with genlab's parameter-free layers kept whole: folding needs only the edges between convs
    and norms, and a layer such as LeNet-5's PadToField (an item assignment) cannot be traced inside."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        own_leaf = (not m.__module__.startswith("torch.") and next(m.parameters(), None) is None
                    and next(m.children(), None) is None)
        return own_leaf or super().is_leaf_module(m, module_qualified_name)


def batch_norm_affine(norm: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, shift) per channel with norm(x) = scale * x + shift in eval mode."""
    weight = norm.weight if norm.affine else torch.ones_like(norm.running_var)
    bias = norm.bias if norm.affine else torch.zeros_like(norm.running_var)
    scale = weight / torch.sqrt(norm.running_var + norm.eps)
    return scale, bias - scale * norm.running_mean


@torch.no_grad()
def fold_into(layer: nn.Conv2d, norm: nn.BatchNorm2d) -> None:
    """Make `layer` compute norm(layer(x)): its output channels scaled, and the shift moved into its bias."""
    scale, shift = batch_norm_affine(norm)
    old_bias = layer.bias if layer.bias is not None else torch.zeros_like(scale)
    layer.weight.mul_(scale.reshape(-1, *[1] * (layer.weight.dim() - 1)))
    layer.bias = nn.Parameter(scale * old_bias + shift)


@torch.no_grad()
def as_depthwise_conv(norm: nn.BatchNorm2d) -> nn.Conv2d:
    """The eval-mode batch norm as a depthwise 1x1 conv: the same per-channel affine map, as a layer with weights."""
    scale, shift = batch_norm_affine(norm)
    conv = nn.Conv2d(norm.num_features, norm.num_features, 1, groups=norm.num_features).to(scale)
    conv.weight.copy_(scale.reshape(-1, 1, 1, 1))
    conv.bias.copy_(shift)
    return conv


def fold_batch_norm(net: nn.Module) -> fx.GraphModule:
    """A copy of `net` in eval mode with no batch norm left, computing the same outputs (`net` is unchanged)."""
    root = copy.deepcopy(net).eval()
    traced = fx.GraphModule(root, LayerTracer().trace(root))
    modules = dict(traced.named_modules())
    for node in list(traced.graph.nodes):
        if node.op != "call_module" or not isinstance(modules[node.target], nn.BatchNorm2d):
            continue
        norm, source = modules[node.target], node.args[0]
        feeder = modules.get(source.target) if isinstance(source, fx.Node) and source.op == "call_module" else None
        if isinstance(feeder, nn.Conv2d) and len(source.users) == 1:
            fold_into(feeder, norm)
            node.replace_all_uses_with(source)
            traced.graph.erase_node(node)
        else:
            traced.set_submodule(node.target, as_depthwise_conv(norm))
    traced.graph.lint()
    traced.recompile()
    traced.delete_all_unused_submodules()
    return traced.eval()


def path_norm_defined(net: nn.Module) -> bool:
    """Whether every unit of `net` is positively homogeneous (ReLU-like, no group/layer norm), as path norm assumes;
    padding with each image's darkest value (LeNet-5's `fill=darkest`) depends on the input, so it is not."""
    return not any(isinstance(m, NOT_HOMOGENEOUS) or getattr(m, "fill", None) == "darkest" for m in net.modules())


def path_norm(net: nn.Module, input_shape: tuple[int, ...]) -> float:
    """Neyshabur et al.'s l2 path norm: the sum over input-output paths of the product of the squared weights on the
    path (biases start paths of their own), on the batch-norm-folded net (see `folded_path_norm`)."""
    return folded_path_norm(fold_batch_norm(net), input_shape)


@torch.no_grad()
def folded_path_norm(folded: nn.Module, input_shape: tuple[int, ...]) -> float:
    """The path norm of a net without batch norm: the output sum of a copy with every parameter squared on an all-ones
    input; shortcuts add their paths, max pooling keeps the largest incoming path."""
    squared = copy.deepcopy(folded).double()
    for parameter in squared.parameters():
        parameter.pow_(2)
    return float(squared(torch.ones(1, *input_shape, dtype=torch.float64)).sum())
