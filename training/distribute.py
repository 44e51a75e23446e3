"""Several devices for one run, on each backend's own engine (never a hand-written all-reduce).

`plan(cfg)` turns `cfg.distribute` / `cfg.replicas` into a `Plan` whose `scope()` the fit path
enters once: everything inside (model building, compiling, checkpoint restore, fit, evaluate,
saving) runs under the engine's distribution.

- JAX: `keras.distribution.DataParallel` (the JAX trainer shards each global batch across the
  devices and replicates the variables) or `ModelParallel` with a layout map for big kernels.
- TensorFlow: `tf.distribute.MirroredStrategy`; Keras' TF trainer distributes the dataset itself
  (`experimental_distribute_dataset`) when the model was built under the strategy's scope.

The global batch is `--batch-size`, split evenly across the replicas; a batch size that does not
divide is refused before the model is built. The engine is chosen once, at import.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from dataclasses import dataclass, field
from typing import Callable

import keras

from errors import UserError

MODES = ("none", "auto", "data-parallel", "model-parallel")
MODEL_PARALLEL_MIN_SIZE = 2**14  # kernels smaller than this stay replicated (sharding them costs more than it saves)
# The layout map's one key (Keras refuses a path that matches two): Dense and attention kernels,
# Embedding tables. Which axis is split follows the variable's shape (`_BigKernelsOnly`).
MODEL_PARALLEL_PATTERN = r"(dense|query|key|value|attention_output|ffn|intermediate|output)[^/]*/kernel$|embedding[^/]*/embeddings$"


@dataclass
class Plan:
    """The resolved distribution of one run: what runs where, and the scope to run it in."""

    mode: str  # none | data-parallel | model-parallel (auto resolved)
    devices: list[str]
    platform: str
    batch_size: int
    simulated: bool = False  # CPU devices split out of one host (they share its cores)
    _scope: Callable[[], contextlib.AbstractContextManager] = field(default=contextlib.nullcontext, repr=False)

    @property
    def replicas(self) -> int:
        return len(self.devices) if self.mode == "data-parallel" else 1

    def scope(self) -> contextlib.AbstractContextManager:
        return self._scope()

    def adapt(self, cfg):
        """The config this plan can run (the engine may have to change it, and says so)."""
        return ENGINE.adapt(cfg) if self.mode == "data-parallel" else cfg

    def prepare_model(self, model) -> None:
        """Make the replicas compute what one device would (before the first step)."""
        if self.mode == "data-parallel":
            ENGINE.prepare_model(model)

    def describe(self) -> dict:
        """What metrics.json records under "distribution"."""
        return {"mode": self.mode, "engine": ENGINE.name if self.mode != "none" else None,
                "devices": self.devices, "platform": self.platform, "replicas": self.replicas,
                "global_batch": self.batch_size, "per_replica_batch": self.batch_size // self.replicas,
                "simulated_cpu_devices": self.simulated}

    def summary_line(self) -> str:
        where = ", ".join(self.devices)
        if self.mode == "none":
            return f"devices: {where} (one device; --distribute none)"
        if self.mode == "model-parallel":
            return f"devices: {where} (model-parallel, big kernels sharded over {len(self.devices)} devices)"
        note = "; simulated CPU devices share the host's cores" if self.simulated else ""
        return (f"devices: {where} (data-parallel over {self.replicas} replica{'s' * (self.replicas > 1)}: global batch {self.batch_size}, "
                f"{self.batch_size // self.replicas} per replica{note})")


def plan(cfg) -> Plan:
    """Resolve `cfg.distribute` on this machine; one line for anything that cannot work."""
    mode, wanted = cfg.distribute, cfg.replicas
    if mode not in MODES:
        raise UserError(f"--distribute {mode}: expected one of {', '.join(MODES)}")
    if wanted < 0:
        raise UserError(f"--set replicas={wanted}: expected >= 0 (0 = every local device)")
    if mode == "model-parallel":
        ENGINE.check_model_parallel()
    local, platform = ENGINE.local_devices()
    if mode == "auto":
        mode = "data-parallel" if platform != "cpu" and len(local) > 1 else "none"
    if wanted > len(local):
        raise UserError(f"--set replicas={wanted}: this machine has {len(local)} {platform} device(s) "
                        f"({', '.join(map(_name, local))})")
    chosen = local[:1] if mode == "none" else local[:wanted or len(local)]
    replicas = len(chosen) if mode == "data-parallel" else 1
    if cfg.batch_size % replicas:
        raise UserError(f"--batch-size {cfg.batch_size}: must divide evenly across the {replicas} data-parallel "
                        f"replicas (global batch = --batch-size); use a multiple of {replicas}")
    simulated = platform == "cpu" and len(local) > 1
    scope = {"none": contextlib.nullcontext, "data-parallel": lambda: ENGINE.data_parallel(chosen),
             "model-parallel": lambda: ENGINE.model_parallel(chosen)}[mode]
    return Plan(mode, [_name(d) for d in chosen], platform, cfg.batch_size, simulated, scope)


def _unsynchronized_config(get_config):
    return lambda: {**get_config(), "synchronized": False}


def _name(device) -> str:
    return getattr(device, "name", None) or str(device)


class _Jax:
    """keras.distribution on JAX: device meshes and layouts; the trainer shards the data."""

    name = "keras.distribution (JAX)"

    def local_devices(self):
        import jax

        devices = jax.local_devices()
        return devices, devices[0].platform

    def data_parallel(self, devices):
        return _EvenOrReplicated(devices=devices).scope()

    def check_model_parallel(self):
        pass

    def adapt(self, cfg):
        return cfg

    def prepare_model(self, model) -> None:
        """Nothing: the SPMD step already normalises over the global batch, one RNG for all shards."""

    def model_parallel(self, devices):
        mesh = keras.distribution.DeviceMesh((1, len(devices)), ("batch", "model"), devices=devices)
        layout_map = keras.distribution.LayoutMap(mesh)
        layout_map[MODEL_PARALLEL_PATTERN] = (None, "model")
        return _BigKernelsOnly(mesh, layout_map).scope()


class _EvenOrReplicated(keras.distribution.DataParallel):
    """DataParallel whose batches that do not divide across the devices (the last validation or
    predict batch) run replicated on every device instead of failing to shard."""

    def get_data_layout(self, data_shape):
        if data_shape and data_shape[0] % self.device_mesh.shape[0]:
            return keras.distribution.TensorLayout([None] * len(data_shape), self.device_mesh)
        return super().get_data_layout(data_shape)


class _BigKernelsOnly(keras.distribution.ModelParallel):
    """ModelParallel over a layout map, keeping small or indivisible kernels replicated."""

    def __init__(self, mesh, layout_map):
        super().__init__(layout_map=layout_map, batch_dim_name="batch")
        self._model_axis = mesh.shape[1]

    def get_variable_layout(self, variable):
        """The map's (None, "model") for a big 2-D kernel; for other ranks (attention kernels are
        3-D) the largest axis the devices divide; small or indivisible ones stay replicated."""
        layout = super().get_variable_layout(variable)
        shape = tuple(variable.shape)
        if "model" not in layout.axes or math.prod(shape) < MODEL_PARALLEL_MIN_SIZE:
            return keras.distribution.TensorLayout([None] * len(shape), self.device_mesh)
        axes = [i for i in range(len(shape)) if shape[i] % self._model_axis == 0]
        if len(shape) == 2 and 1 in axes:
            axis = 1
        elif axes:
            axis = max(axes, key=lambda i: shape[i])
        else:
            return keras.distribution.TensorLayout([None] * len(shape), self.device_mesh)
        return keras.distribution.TensorLayout(["model" if i == axis else None for i in range(len(shape))],
                                               self.device_mesh)

    def get_data_layout(self, data_shape):
        return keras.distribution.TensorLayout([None] * len(data_shape), self.device_mesh)


class _TensorFlow:
    """tf.distribute: MirroredStrategy over the local devices; Keras distributes the dataset."""

    name = "tf.distribute.MirroredStrategy"

    def local_devices(self):
        import tensorflow as tf

        gpus = tf.config.list_logical_devices("GPU")  # TPUs need TPUStrategy: Cloud TPU runs on JAX here
        return (gpus, "gpu") if gpus else (tf.config.list_logical_devices("CPU"), "cpu")

    def data_parallel(self, devices):
        import tensorflow as tf

        names = [d.name for d in devices]
        # On CPUs NCCL does not exist: reduce on one device (what the strategy picks for CPUs anyway).
        ops = tf.distribute.ReductionToOneDevice() if devices[0].device_type == "CPU" else None
        return tf.distribute.MirroredStrategy(devices=names, cross_device_ops=ops).scope()

    def adapt(self, cfg):
        """Keras' TF trainer cannot XLA-compile a step that spans tf.distribute replicas (its own
        jit_compile="auto" turns XLA off there too)."""
        if not cfg.jit_compile:
            return cfg
        print("note: jit_compile=False under tf.distribute (Keras cannot XLA-compile a step across replicas)",
              flush=True)
        return dataclasses.replace(cfg, jit_compile=False)

    def prepare_model(self, model) -> None:
        """Under tf.distribute each replica's BatchNormalization sees only its slice of the batch
        unless synchronized: synchronise them for the run, as one device would normalise. The saved
        config stays unsynchronized, so model.keras loads on either backend."""
        for layer in model._flatten_layers():
            if isinstance(layer, keras.layers.BatchNormalization) and not layer.synchronized:
                layer.synchronized = True
                layer.get_config = _unsynchronized_config(layer.get_config)

    def check_model_parallel(self):
        raise UserError("--set distribute=model-parallel: JAX only (keras.distribution.ModelParallel); "
                        "run with --backend jax, or use --distribute data-parallel on tensorflow")


ENGINE = _Jax() if keras.config.backend() == "jax" else _TensorFlow()
