"""Registry and typed config resolution (defaults -> preset -> flags -> --set)."""

import dataclasses

import pytest

from errors import UserError
from tasks.base import (Task, TrainConfig, _REGISTRY, config_from_dict, get_task, parse_overrides, register,
                        resolve_config)


def test_classification_is_registered_and_unknown_task_lists_valid_ones():
    assert get_task("classification").name == "classification"
    with pytest.raises(UserError, match=r"unknown task 'nope'; valid tasks: .*classification"):
        get_task("nope")


def test_registering_a_name_twice_raises():
    task = get_task("classification")
    with pytest.raises(ValueError, match="already registered"):
        register(dataclasses.replace(task))
    assert _REGISTRY["classification"] is task


def test_precedence_defaults_preset_flags_set():
    task = get_task("classification")
    assert resolve_config(task).epochs == task.config_cls().epochs
    cfg = resolve_config(task, "debug")
    assert cfg.epochs == task.presets["debug"]["epochs"] and cfg.num_train == task.presets["debug"]["num_train"]
    cfg = resolve_config(task, "debug", flags={"epochs": 3}, sets=["epochs=4", "model=resnet", "learning_rate=1e-2"])
    assert (cfg.epochs, cfg.model, cfg.learning_rate) == (4, "resnet", 0.01)
    cfg = resolve_config(task, "debug", flags={"epochs": 3})
    assert cfg.epochs == 3


@pytest.mark.parametrize("pair, message", [
    ("epochs=x", r"--set epochs='x': expected int, got str"),
    ("epochs=1.5", r"expected int, got float"),
    ("learning_rate=fast", r"expected float, got str"),
    ("jit_compile=maybe", r"expected bool"),
    ("model=vgg", r"expected one of cnn, resnet"),
    ("epochs=0", r"expected a positive int"),
    ("nope=1", r"unknown config key 'nope'; valid keys: .*batch_size.*epochs"),
    ("novalue", r"expected key=value"),
])
def test_bad_overrides_name_the_key_and_the_expected_type(pair, message):
    with pytest.raises(UserError, match=message):
        resolve_config(get_task("classification"), sets=[pair])


def test_value_parsing_is_typed():
    task = get_task("classification")
    cfg = resolve_config(task, sets=["jit_compile=false", "classes=circle,square", "learning_rate=1",
                                     "data=tfds:mnist"])
    assert cfg.jit_compile is False
    assert cfg.classes == ("circle", "square")
    assert isinstance(cfg.learning_rate, float)
    assert cfg.data == "tfds:mnist"
    assert parse_overrides(["a=[1, 2]", "b='x'"]) == {"a": [1, 2], "b": "x"}


def test_unknown_preset_lists_valid_presets():
    with pytest.raises(UserError, match=r"--preset 'huge'.*valid presets: debug, small"):
        resolve_config(get_task("classification"), "huge")


def test_saved_config_round_trips():
    task = get_task("classification")
    cfg = resolve_config(task, "debug", sets=["model=resnet"])
    assert config_from_dict(task, cfg.to_dict()) == cfg


def test_task_configs_share_the_engine_fields():
    for name in ("epochs", "batch_size", "learning_rate", "seed", "jit_compile", "data", "model"):
        assert name in {f.name for f in dataclasses.fields(TrainConfig)}
    assert issubclass(get_task("classification").config_cls, TrainConfig)
    assert isinstance(get_task("classification"), Task)
