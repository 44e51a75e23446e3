"""tf.data streams: element_spec vs the model's inputs, determinism, exact resume position."""

import numpy as np
import tensorflow as tf

from pipelines import stream
from tasks.base import get_task, resolve_config


def _debug_data():
    task = get_task("classification")
    cfg = resolve_config(task, "debug", sets=["num_train=96", "num_val=32"])
    return task, cfg, task.build_datasets(cfg)


def test_element_spec_matches_the_model_inputs():
    task, cfg, data = _debug_data()
    model = task.build_model(cfg, data.info)
    train = stream.training_stream(data.train, num_examples=data.info.num_train, batch_size=cfg.batch_size,
                                   seed=0, end_epoch=1, augment=data.augment)
    x_spec, y_spec = train.element_spec
    assert tuple(x_spec.shape) == (cfg.batch_size, *model.inputs[0].shape[1:])
    assert x_spec.dtype == tf.float32 and y_spec.dtype == tf.int32
    assert model.outputs[0].shape[-1] == data.info.num_classes
    x, y = next(iter(train))
    assert 0.0 <= float(tf.reduce_min(x)) and float(tf.reduce_max(x)) <= 1.0
    assert set(np.unique(y.numpy())) <= set(range(data.info.num_classes))


def _batches(ds):
    return [y.numpy().tolist() + [float(tf.reduce_sum(x))] for x, y in ds]


def test_stream_is_a_function_of_seed_and_epoch_so_resume_is_exact():
    _, cfg, data = _debug_data()
    kw = dict(num_examples=data.info.num_train, batch_size=16, augment=data.augment)
    full = _batches(stream.training_stream(data.train, seed=3, end_epoch=3, **kw))
    assert len(full) == 3 * (96 // 16)
    again = _batches(stream.training_stream(data.train, seed=3, end_epoch=3, **kw))
    assert full == again
    resumed = _batches(stream.training_stream(data.train, seed=3, start_epoch=1, skip_batches=2, end_epoch=3, **kw))
    assert resumed == full[6 + 2:]
    other_seed = _batches(stream.training_stream(data.train, seed=4, end_epoch=1, **kw))
    assert other_seed != full[:6]
    assert full[:6] != full[6:12], "epochs are shuffled differently"


def test_batch_larger_than_dataset_is_a_clear_error():
    import pytest

    from errors import DataError

    with pytest.raises(DataError, match="--batch-size 64: larger than the training set"):
        stream.steps_per_epoch(10, 64)
