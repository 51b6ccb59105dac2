"""Training diagnostics as Lightning callbacks."""
from __future__ import annotations

import lightning.pytorch as L
import torch
from torch import Tensor, nn


def network_blocks(net: nn.Module) -> dict[str, nn.Module]:
    """The blocks a diagnostic reports on: the net's top-level children that have parameters.

    Top-level ModuleLists and ModuleDicts are collections, not layers, so they are opened one level: each residual
    block of a ResNet (`blocks.3`) and each Inception module of GoogLeNet (`inceptions.4a`) is its own entry.
    """
    blocks = {}
    for name, child in net.named_children():
        members = child.named_children() if isinstance(child, (nn.ModuleList, nn.ModuleDict)) else [("", child)]
        for sub_name, module in members:
            if any(True for _ in module.parameters()):
                blocks[f"{name}.{sub_name}" if sub_name else name] = module
    return blocks


class GradientStats(L.Callback):
    """Every `every_n_steps` optimizer steps, log per block: the gradient norm and the mean/std of its output.

    Vanishing or exploding gradients and saturating activations (why BN and skip connections matter) show up as
    `grad_norm/<block>`, `act_mean/<block>` and `act_std/<block>` curves in every logger, at the optimizer step.
    """

    def __init__(self, every_n_steps: int = 50):
        super().__init__()
        if every_n_steps < 1:
            raise ValueError(f"every_n_steps must be >= 1, got {every_n_steps}")
        self.every_n_steps = every_n_steps
        self._blocks: dict[str, nn.Module] = {}
        self._handles: list = []
        self._activations: dict[str, Tensor] = {}
        self._recording = False

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._blocks = network_blocks(pl_module.net)
        self._handles = [module.register_forward_hook(self._hook(name)) for name, module in self._blocks.items()]

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def _hook(self, name: str):
        def record(module: nn.Module, inputs, output) -> None:
            if self._recording and module.training and isinstance(output, Tensor):
                out = output.detach().float()
                self._activations[name] = torch.stack([out.mean(), out.std()])

        return record

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        self._recording = trainer.global_step % self.every_n_steps == 0
        self._activations = {}

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer) -> None:
        if not self._recording:
            return
        self._recording = False
        metrics = {}
        for name, module in self._blocks.items():
            grads = [p.grad.detach().float().norm() for p in module.parameters() if p.grad is not None]
            if grads:
                metrics[f"grad_norm/{name}"] = torch.stack(grads).norm().item()
        for name, stats in self._activations.items():
            metrics[f"act_mean/{name}"], metrics[f"act_std/{name}"] = stats.tolist()
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=trainer.global_step)
