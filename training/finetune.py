"""Fine-tuning a model that holds a keras-hub backbone: a lower backbone learning rate, and training
the head alone for the first `freeze_backbone_epochs` epochs.

Freezing changes which variables a train step updates, so it cannot happen inside one `model.fit`
(JAX's fit gathers the trainable and non-trainable state once, at its start). The loop therefore
splits its fit at the unfreeze epoch and calls `enter_phase` before each part: it sets the
backbone's `trainable` (a frozen Keras BatchNormalization runs in inference mode) and drops the
cached train function so the next fit traces it again for the new trainable set. The optimizer is
built on every variable before the first freeze, so its state (and every checkpoint's layout) is
the same frozen or not, and a resume on either side of the boundary restores the right phase.
"""

from __future__ import annotations

import keras

from keras_models.pretrained import FineTuningAdamW, find_backbone


def scale_backbone_lr(optimizer, model, cfg):
    """The AdamW from `make_optimizer`, as a FineTuningAdamW when the model holds a keras-hub backbone."""
    backbone = find_backbone(model) if getattr(cfg, "backbone", "") else None
    if backbone is None or type(optimizer) is not keras.optimizers.AdamW:
        return optimizer
    scaled = FineTuningAdamW.from_config({**optimizer.get_config(), "backbone_lr_scale": cfg.backbone_lr_scale})
    scaled.scale_variables(backbone.trainable_variables)
    return scaled


def split_at_unfreeze(segments: list, cfg) -> list:
    """The loop's fit segments (first epoch, batches to skip, end epoch, steps) cut at the unfreeze epoch."""
    boundary = getattr(cfg, "freeze_backbone_epochs", 0) if getattr(cfg, "backbone", "") else 0
    out = []
    for first, skip, end, steps in segments:
        if first < boundary < end:
            out += [(first, skip, boundary, steps), (boundary, 0, end, steps)]
        else:
            out.append((first, skip, end, steps))
    return out


def is_frozen_epoch(cfg, epoch: int) -> bool:
    return bool(getattr(cfg, "backbone", "")) and epoch < getattr(cfg, "freeze_backbone_epochs", 0)


def enter_phase(model, cfg, epoch: int) -> None:
    """Freeze or unfreeze the backbone for a fit segment starting at `epoch` (no-op without one)."""
    backbone = find_backbone(model) if getattr(cfg, "backbone", "") else None
    if backbone is None:
        return
    trainable = not is_frozen_epoch(cfg, epoch)
    if backbone.trainable == trainable:
        return
    if model.optimizer is not None and not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)  # all variables: one state layout in both phases
    backbone.trainable = trainable
    optimizer = _fine_tuning_optimizer(model)
    if optimizer is not None:
        optimizer.train_only(None if trainable else model.trainable_variables)
    model.train_function = None  # traced again by the next fit, for the new trainable set


def unfreeze(model) -> None:
    """After training: the saved model's backbone is trainable again, as a freshly built one is."""
    backbone = find_backbone(model)
    if backbone is not None and not backbone.trainable:
        backbone.trainable = True
        optimizer = _fine_tuning_optimizer(model)
        if optimizer is not None:
            optimizer.train_only(None)
        model.train_function = None


def _fine_tuning_optimizer(model):
    """The model's FineTuningAdamW, also inside mixed_float16's LossScaleOptimizer; None otherwise."""
    optimizer = getattr(model.optimizer, "inner_optimizer", model.optimizer)
    return optimizer if isinstance(optimizer, FineTuningAdamW) else None
