"""Fine-tuning from a keras-hub preset (`--set backbone=PRESET`), without the network: tiny randomly
initialised keras-hub backbones are saved with `save_to_preset` into a temporary folder and the task
starts from that path, the code path a real handle takes once keras-hub has downloaded it.

One classification fit (2 epochs: the first frozen, the second unfrozen at backbone_lr_scale=0.1) is
shared by the checks on freezing, resume across the unfreeze epoch, evaluate/predict and reloading;
one text-classification fit (BERT) and one segmentation fit (ResNet pyramid as U-Net encoder) check
their tasks' own parts; all three models reload in one fresh process.
"""

import json
import shutil

import numpy as np
import pytest

from conftest import BACKEND, FAST_JIT
from errors import UserError
from tasks.base import get_task, resolve_config
from training import portable

LR, SCALE = 0.01, 0.1
STEPS_PER_EPOCH = 2
SIZE = 16  # images and the preset's image size


@pytest.fixture(scope="module")
def presets(tmp_path_factory):
    """Tiny preset dirs: "image" (1-stage ResNet + image converter), "pyramid" (2 stages: P2, P3),
    "text" (BERT + tokenizer)."""
    import keras
    import keras_hub

    keras.utils.set_random_seed(1)
    root = tmp_path_factory.mktemp("presets")
    image = keras_hub.models.ResNetBackbone(
        input_conv_filters=[64], input_conv_kernel_sizes=[3], stackwise_num_filters=[64],
        stackwise_num_blocks=[1], stackwise_num_strides=[1], block_type="basic_block",
        use_pre_activation=False, image_shape=(None, None, 3))
    image.save_to_preset(root / "resnet")
    keras_hub.layers.ResNetImageConverter(image_size=(SIZE, SIZE), scale=1 / 255.0).save_to_preset(root / "resnet")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "good", "bad", "film", "very", "not"]
    text = keras_hub.models.BertBackbone(vocabulary_size=len(vocab), num_layers=1, num_heads=2, hidden_dim=8,
                                         intermediate_dim=16, max_sequence_length=32)
    text.save_to_preset(root / "bert")
    pyramid = keras_hub.models.ResNetBackbone(
        input_conv_filters=[64], input_conv_kernel_sizes=[3], stackwise_num_filters=[64, 64],
        stackwise_num_blocks=[1, 1], stackwise_num_strides=[1, 2], block_type="basic_block",
        use_pre_activation=False, image_shape=(None, None, 3))
    pyramid.save_to_preset(root / "pyramid")
    keras_hub.layers.ResNetImageConverter(image_size=(SIZE, SIZE), scale=1 / 255.0).save_to_preset(root / "pyramid")
    keras_hub.models.BertTokenizer(vocabulary=vocab).save_to_preset(root / "bert")
    return {"image": root / "resnet", "text": root / "bert", "pyramid": root / "pyramid"}


def classification_cfg(preset, *sets):
    """dropout=0: a resumed run does not restore a Dropout layer's random state (true of every task,
    not only fine-tuning), so only a model without dropout finishes exactly as the uninterrupted run."""
    return resolve_config(get_task("classification"), preset="debug", sets=[
        FAST_JIT, f"backbone={preset}", "epochs=2", "freeze_backbone_epochs=1", f"backbone_lr_scale={SCALE}",
        f"learning_rate={LR}", "weight_decay=0.0", "batch_size=32", "num_train=64", "num_val=32", "num_test=0",
        "augment=False", f"image_size={SIZE}", "dropout=0.0", *sets])


class BackboneSnapshots:
    """Backbone and head weights (all of them: BN moving statistics too) at the end of every epoch."""

    def __new__(cls):
        import keras

        class Recorder(keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.epochs = {}

            def on_epoch_end(self, epoch, logs=None):
                from keras_models.pretrained import find_backbone

                backbone = find_backbone(self.model)
                self.epochs[epoch] = {"backbone": [np.array(v) for v in backbone.weights],
                                      "learned": [np.array(v) for v in backbone.weights if "moving" not in v.path],
                                      "head": np.array(self.model.get_layer("logits").get_weights()[0])}

        return Recorder()


def preset_weights(path):
    import keras_hub

    return [np.array(w) for w in keras_hub.models.Backbone.from_preset(str(path)).get_weights()]


def max_change(before, after):
    return max(float(np.max(np.abs(a - b))) for a, b in zip(before, after))


@pytest.fixture(scope="module")
def finetuned(presets, tmp_path_factory):
    from training.loop import fit

    recorder = BackboneSnapshots()
    cfg = classification_cfg(presets["image"])
    result = fit(get_task("classification"), cfg, tmp_path_factory.mktemp("run") / "run", verbose=0,
                 extra_callbacks=[recorder])
    return result, recorder.epochs, cfg


def test_frozen_epoch_leaves_the_backbone_unchanged_and_trains_the_head(finetuned, presets):
    _, epochs, _ = finetuned
    start = preset_weights(presets["image"])
    # BN moving statistics are among these weights: unchanged means BN ran in inference mode.
    assert max_change(start, epochs[0]["backbone"]) == 0.0
    assert float(np.max(np.abs(epochs[0]["head"]))) > 0 and epochs[0]["head"].std() > 0


def test_unfrozen_epoch_changes_the_backbone_within_the_scaled_learning_rate(finetuned):
    _, epochs, _ = finetuned
    change = max_change(epochs[0]["learned"], epochs[1]["learned"])  # BN moving statistics left out
    # Adam moves a weight by at most (1-b1)/sqrt(1-b2) ~ 3.2 learning rates per step; unscaled, the
    # bound would be 10x this one (the exact scale is the one-step test's).
    assert 0 < change <= 3.2 * LR * SCALE * STEPS_PER_EPOCH


def test_one_step_moves_backbone_weights_by_the_scaled_learning_rate(presets):
    """A first Adam step moves each weight by lr * g / (|g| + eps) ~ lr: the backbone's by lr * SCALE."""
    import keras

    from keras_models.pretrained import find_backbone
    from training.loop import build_and_compile, build_data

    task = get_task("classification")
    cfg = classification_cfg(presets["image"])
    data = build_data(task, cfg)
    model, _ = build_and_compile(task, cfg, data.info, total_steps=10)
    x, y = next(iter(data.train.batch(32).as_numpy_iterator()))
    backbone = find_backbone(model)
    before = [np.array(v) for v in backbone.trainable_variables]
    head_before = np.array(model.get_layer("logits").kernel)
    model.train_on_batch(x, y)
    backbone_step = max_change(before, [np.array(v) for v in backbone.trainable_variables])
    head_step = float(np.max(np.abs(np.array(model.get_layer("logits").kernel) - head_before)))
    assert head_step == pytest.approx(LR, rel=0.02)
    assert backbone_step == pytest.approx(LR * SCALE, rel=0.02)
    assert isinstance(model.optimizer, keras.optimizers.AdamW)


def test_resume_at_the_unfreeze_epoch_matches_the_uninterrupted_run(finetuned, tmp_path):
    """Resume from the checkpoint written at the end of the frozen epoch (the backbone must come back
    trainable for the second epoch) and finish as the run that was never interrupted."""
    from training import rundir
    from training.loop import fit

    result, _, cfg = finetuned
    copy = tmp_path / "resumed"
    shutil.copytree(result.run_dir, copy)
    (copy / rundir.MODEL).unlink()
    state = rundir.read_json(copy / rundir.CHECKPOINTS / f"step-{STEPS_PER_EPOCH:08d}.json")
    assert state["epoch"] == 1 and state["step_in_epoch"] == 0
    resumed = fit(get_task("classification"), cfg, copy, resume=state, verbose=0)
    for a, b in zip(result.model.get_weights(), resumed.model.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-5)
    assert resumed.metrics["resumed_from_step"] == STEPS_PER_EPOCH


def test_finetuned_image_run_evaluates_and_predicts(finetuned, tmp_path):
    from training import inference

    result, _, cfg = finetuned
    task = get_task("classification")
    metrics = inference.evaluate(task, result.run_dir, report=lambda text: None)
    assert 0.0 <= metrics["metrics"]["accuracy"] <= 1.0
    images = task.sample_inputs(cfg, inference.load_data_info(result.run_dir), tmp_path, 2)
    rows, _ = inference.predict(task, result.run_dir, images, out_dir=tmp_path / "pred")
    assert len(rows) == 2 and all(r["label"] in cfg.classes for r in rows)


def test_a_text_preset_for_an_image_task_is_one_line_before_training(presets, tmp_path):
    from training.loop import fit

    cfg = classification_cfg(presets["text"])
    with pytest.raises(UserError, match=r"backbone=.*bert: a BertBackbone does not fit this task; expected an image "
                                        r"backbone") as err:
        fit(get_task("classification"), cfg, tmp_path / "run", verbose=0)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "run" / "checkpoints").exists() or not any((tmp_path / "run" / "checkpoints").iterdir())


def test_a_handle_that_cannot_be_downloaded_names_it_and_suggests_a_directory(monkeypatch):
    import keras_hub

    from keras_models import pretrained

    def offline(*args, **kwargs):
        raise ConnectionError("Failed to resolve 'www.kaggle.com'")

    monkeypatch.setattr(keras_hub.models.Backbone, "from_preset", offline)
    with pytest.raises(UserError, match=r"backbone=resnet_18_imagenet: cannot download the preset \(no network\?\); "
                                        r"download it once .* pass its local directory"):
        pretrained.load_backbone("resnet_18_imagenet", "image")


def test_missing_directory_and_knobs_without_backbone_are_one_line(tmp_path):
    from keras_models import pretrained

    with pytest.raises(UserError, match="no such preset directory"):
        pretrained.load_backbone(str(tmp_path / "absent"), "image")
    with pytest.raises(UserError, match="need --set backbone=PRESET"):
        get_task("classification").build_model(
            resolve_config(get_task("classification"), sets=["freeze_backbone_epochs=1"]), None)


# --- text-classification from a BERT-family preset ---------------------------------------------------


@pytest.fixture(scope="module")
def text_finetuned(presets, tmp_path_factory):
    from training.loop import fit

    recorder = BackboneSnapshots()
    cfg = resolve_config(get_task("text-classification"), preset="debug", sets=[
        FAST_JIT, f"backbone={presets['text']}", "epochs=1", "learning_rate=0.01",
        "batch_size=32", "num_train=64", "num_val=32", "num_test=0", "sequence_length=12"])
    result = fit(get_task("text-classification"), cfg, tmp_path_factory.mktemp("text") / "run", verbose=0,
                 extra_callbacks=[recorder])
    return result, recorder.epochs, cfg


def test_text_run_tokenizes_with_the_preset_and_trains_the_backbone(text_finetuned, presets):
    """One epoch, no freeze (the freeze/unfreeze machinery is the image run's, and CI time is short)."""
    result, epochs, _ = text_finetuned
    info = json.loads((result.run_dir / "data_info.json").read_text())
    assert set(info["inputs"]) == {"token_ids", "padding_mask", "segment_ids"}
    assert info["vocabularies"] == {} and "vocabulary.txt" in info["extra"]["preset_preprocessor"]["assets"]
    assert max_change(preset_weights(presets["text"]), epochs[0]["backbone"]) > 0


def test_text_run_predicts_with_the_tokenizer_saved_in_the_run(text_finetuned, tmp_path):
    """The run's data_info.json, not the preset, tokenizes for predict: a text of the preset's words
    and one of words it lacks ([UNK]) get the probabilities the trained model gives their ids."""
    from training import inference

    result, _, _ = text_finetuned
    task = get_task("text-classification")
    rows, _ = inference.predict(task, result.run_dir, ["very good film", "zebra"], out_dir=tmp_path)
    ids = {"token_ids": np.array([[2, 8, 5, 7, 3] + [0] * 7, [2, 1, 3] + [0] * 9], np.int32),
           "padding_mask": np.array([[1] * 5 + [0] * 7, [1] * 3 + [0] * 9], np.int32),
           "segment_ids": np.zeros((2, 12), np.int32)}
    import keras

    probs = np.asarray(keras.ops.softmax(result.model.predict_on_batch(ids), axis=-1))
    names = list(rows[0]["probabilities"])
    got = np.array([[r["probabilities"][n] for n in names] for r in rows])
    np.testing.assert_allclose(got, probs, atol=1e-5)


# --- segmentation: the backbone's pyramid outputs as a U-Net encoder ------------------------------------


@pytest.fixture(scope="module")
def segmentation_finetuned(presets, tmp_path_factory):
    """The 2-stage tiny ResNet has pyramid levels P2 and P3 (1/8): 32x32 scenes, one epoch."""
    from training.loop import fit

    cfg = resolve_config(get_task("segmentation"), preset="debug", sets=[
        FAST_JIT, f"backbone={presets['pyramid']}", "backbone_lr_scale=0.1", "num_test=0", "augment=False"])
    return fit(get_task("segmentation"), cfg, tmp_path_factory.mktemp("seg") / "run", verbose=0)


def test_segmentation_on_a_pyramid_backbone_trains_encoder_and_decoder(segmentation_finetuned, presets):
    from keras_models.pretrained import ENCODER, find_backbone

    model = segmentation_finetuned.model
    encoder = find_backbone(model)
    assert encoder.name == ENCODER and model.output.shape[1:] == (32, 32, 4)
    assert max_change(preset_weights(presets["pyramid"]), [np.array(v) for v in encoder.weights]) > 0


def test_a_text_preset_for_segmentation_is_one_line_before_training(presets, tmp_path):
    from training.loop import fit

    cfg = resolve_config(get_task("segmentation"), preset="debug", sets=[f"backbone={presets['text']}"])
    with pytest.raises(UserError, match=r"a BertBackbone does not fit this task; expected an image backbone with "
                                        r"pyramid outputs"):
        fit(get_task("segmentation"), cfg, tmp_path / "run", verbose=0)


def test_finetuned_models_reload_in_a_fresh_process(finetuned, text_finetuned, segmentation_finetuned, tmp_path):
    """model.keras of the three runs loads with a plain keras.saving.load_model (keras-hub imported by Keras
    from the module the file names) and predicts what the trained model predicted."""
    image, text = finetuned[0], text_finetuned[0]
    cases = {"image": (image.run_dir / "model.keras", np.random.default_rng(0).random((4, SIZE, SIZE, 3), np.float32)),
             "text": (text.run_dir / "model.keras", {"token_ids": np.array([[2, 5, 6, 3, 0, 0, 0, 0, 0, 0, 0, 0]] * 2, np.int32),
                                                      "padding_mask": np.array([[1] * 4 + [0] * 8] * 2, np.int32),
                                                      "segment_ids": np.zeros((2, 12), np.int32)}),
             "segmentation": (segmentation_finetuned.run_dir / "model.keras",
                              np.random.default_rng(1).random((2, 32, 32, 3), np.float32))}
    reloaded = portable.predict_in_fresh_process(cases, BACKEND, tmp_path)
    for name, result in (("image", image), ("text", text), ("segmentation", segmentation_finetuned)):
        expected = portable.flat_predictions(result.model, cases[name][1])
        assert portable.max_abs_difference(expected, reloaded.predictions[name]) <= 1e-5, name


def test_an_image_preset_for_text_classification_is_one_line_before_training(presets, tmp_path):
    from training.loop import fit

    cfg = resolve_config(get_task("text-classification"), preset="debug", sets=[f"backbone={presets['image']}"])
    with pytest.raises(UserError, match=r"backbone=.*resnet: the directory holds no loadable text preprocessor") as err:
        fit(get_task("text-classification"), cfg, tmp_path / "run", verbose=0)
    assert "\n" not in str(err.value)
