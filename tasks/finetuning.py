"""The fine-tuning knobs a task with a pretrained-backbone option adds to its config (no keras here)."""

from __future__ import annotations

from dataclasses import dataclass, field

from errors import UserError
from tasks.base import TrainConfig


@dataclass(frozen=True)
class PretrainedConfig(TrainConfig):
    backbone: str = field(default="", metadata={
        "help": "keras-hub preset handle or local preset directory to start from ('' = train from scratch)"})
    freeze_backbone_epochs: int = field(default=0, metadata={
        "help": "epochs that train only the head (backbone frozen, batch norm in inference mode) before unfreezing"})
    backbone_lr_scale: float = field(default=1.0, metadata={
        "help": "backbone learning rate = learning_rate * this (e.g. 0.1)"})


def check_finetune_config(cfg: PretrainedConfig) -> None:
    """Fine-tuning knobs only mean something with a backbone; called by the task before any work."""
    if cfg.freeze_backbone_epochs < 0:
        raise UserError(f"--set freeze_backbone_epochs={cfg.freeze_backbone_epochs}: expected >= 0")
    if cfg.backbone_lr_scale <= 0:
        raise UserError(f"--set backbone_lr_scale={cfg.backbone_lr_scale}: expected a positive float")
    if not cfg.backbone and (cfg.freeze_backbone_epochs or cfg.backbone_lr_scale != 1.0):
        raise UserError("--set freeze_backbone_epochs / backbone_lr_scale: need --set backbone=PRESET "
                        "(a keras-hub preset handle or local preset directory)")
