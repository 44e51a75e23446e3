"""Text classification: generated 3-class sentiment by default; TFDS IMDB / GLUE SST-2; CSV/TSV files;
class folders of .txt files; `label sentence` files (SST-2 stsa.binary.*).

Tokenization is a `keras.layers.TextVectorization` adapted on the training texts and applied in
tf.data; its vocabulary is saved in `data_info.json` (DataInfo.vocabularies["tokens"]) so `predict`
takes raw strings and `evaluate` tokenizes exactly as training did. Models see int token ids only,
always exactly `sequence_length` of them (a text with no token left is all padding, and counted).
Split files or folders give train / validation (`*dev*`, else carved from train by seed) / test.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from errors import DataError, UserError
from pipelines import Data, DataInfo, parse_data_spec
from pipelines.data import InputSpec
from pipelines.labels import check_label_set
from pipelines.splits import carve_indices, carved_note, find_split_folders
from tasks.base import Task, register
from tasks.exporting import Export, argmax_decision, log_probabilities
from tasks.finetuning import PretrainedConfig, check_finetune_config
from tasks.lazy import lazy_module
from tasks.visuals import confusion_image, confusion_matrix

keras = lazy_module("keras")
ops = lazy_module("keras.ops")
model_metrics = lazy_module("keras_models.metrics")
text_models = lazy_module("keras_models.text")
text_data = lazy_module("pipelines.text")
pretrained = lazy_module("keras_models.pretrained")
preset_text = lazy_module("pipelines.preset_text")

STANDARDIZE = {"lower_and_strip_punctuation": "lower_and_strip_punctuation", "lower": "lower",
               "strip_punctuation": "strip_punctuation", "none": None}
MODEL_NAMES = ("cnn", "bilstm", "transformer")  # keys of keras_models.text.MODELS (importing it imports keras)


@dataclass(frozen=True)
class TextClassificationConfig(PretrainedConfig):
    model: str = field(default="cnn", metadata={"choices": MODEL_NAMES,
                                                 "help": "cnn | bilstm | transformer"})
    epochs: int = 6
    batch_size: int = 64
    learning_rate: float = 2e-3
    warmup_steps: int = 30
    vocab_size: int = field(default=20000, metadata={"help": "most frequent training tokens kept (incl. padding and [UNK])"})
    sequence_length: int = field(default=40, metadata={"help": "token ids per text (longer texts are cut, shorter padded)"})
    standardize: str = field(default="lower_and_strip_punctuation", metadata={
        "choices": tuple(STANDARDIZE), "help": "TextVectorization text standardization"})
    embedding_dim: int = field(default=64, metadata={"help": "token embedding size"})
    hidden: int = field(default=64, metadata={"help": "LSTM units / Transformer feed-forward size / CNN filters per width"})
    num_heads: int = field(default=2, metadata={"help": "attention heads (transformer)"})
    num_layers: int = field(default=1, metadata={"help": "LSTM or Transformer encoder layers"})
    dropout: float = field(default=0.3, metadata={"help": "dropout on embeddings (whole channels) and before the logits"})
    encoder_dropout: float = field(default=0.0, metadata={
        "help": "dropout inside Transformer blocks (0: element-wise dropout is ~20x slower with TensorFlow XLA on CPU)"})
    text_column: str = field(default="text", metadata={
        "help": "CSV/TSV column holding the text: a header name, or a position for a file without a header"})
    label_column: str = field(default="label", metadata={
        "help": "column holding the label: a header name, or 0|-1 (first|last column) for a file without a "
                "header (a two-column file's label column of few distinct values is found by itself)"})
    classes: tuple[str, ...] = field(default=(), metadata={
        "help": "allowed labels in class order (default: sorted labels of the training data)"})
    num_train: int = field(default=4000, metadata={"help": "generated training sentences (embedded data)"})
    num_val: int = field(default=1000, metadata={"help": "generated validation sentences (embedded data)"})
    num_test: int = field(default=1000, metadata={"help": "generated test sentences (embedded data; 0 = no test split)"})
    per_class_metrics: bool = field(default=True, metadata={"help": "report precision/recall per class"})


# --- data ----------------------------------------------------------------------------------------
# Each source gives raw (text, label id) datasets per split; _finish learns (or reuses) the
# vocabulary, tokenizes every split and counts the texts left empty by standardization.

LABEL_HINT = ("if the label is another column, say which: --set label_column=NAME (a header name) or "
              "--set label_column=0|-1 (first|last column, no header)")
FOLDER_HINT = "expected one sub-folder per class, each holding many .txt files"


@dataclass
class _Raw:
    splits: dict  # {"train"|"validation"|"test": (tf.data.Dataset of (string, int32), count)}; test optional
    class_names: tuple
    source: str
    origins: dict  # {split: where it came from}


def _generated(cfg, spec, fitted) -> _Raw:
    tr_texts, tr_labels = text_data.generated_sentiment(cfg.num_train, cfg.seed, "train")
    va_texts, va_labels = text_data.generated_sentiment(cfg.num_val, cfg.seed, "validation")
    splits = {"train": (text_data.from_lists(tr_texts, tr_labels), cfg.num_train),
              "validation": (text_data.from_lists(va_texts, va_labels), cfg.num_val)}
    origins = {"train": f"generated (seed {cfg.seed})", "validation": f"generated (seed {cfg.seed}, own stream)"}
    if cfg.num_test:
        te_texts, te_labels = text_data.generated_sentiment(cfg.num_test, cfg.seed, "test")
        splits["test"] = (text_data.from_lists(te_texts, te_labels), cfg.num_test)
        origins["test"] = f"generated (seed {cfg.seed}, own stream)"
    return _Raw(splits, text_data.SENTIMENT_CLASSES, "generated sentiment (3 classes)", origins)


def _labelled(ds, label_key: str) -> bool:
    """GLUE's test splits hide their labels (-1): such a split cannot be scored."""
    return all(int(ex[label_key]) >= 0 for ex in ds.take(1).as_numpy_iterator())


def _tfds(cfg, spec, fitted) -> _Raw:
    from pipelines import tfds_source

    datasets, counts, tinfo = tfds_source.load_tfds(spec.value)
    features = tinfo.features
    text_key = next((k for k in ("text", "sentence", "review", "content") if k in features), None)
    if text_key is None or "label" not in features:
        raise DataError(f"--data tfds:{spec.value}: expected a 'text' (or 'sentence') and a 'label' feature, "
                        f"has {list(features)}")
    parts, origins = tfds_source.three_splits(datasets, counts, cfg.val_fraction, cfg.seed, f"tfds:{spec.value}")
    if "test" in parts and not _labelled(parts["test"][0], "label"):
        del parts["test"]
        origins["test"] = "none: the test split's labels are hidden (-1)"
    pick = lambda ex: (ex[text_key], ex["label"])  # noqa: E731
    splits = {name: (ds.map(pick), n) for name, (ds, n) in parts.items()}
    return _Raw(splits, tuple(features["label"].names), f"tfds:{spec.value}", origins)


def _class_names(cfg, fitted, examples, source: str, hint: str) -> tuple:
    """The saved class order (evaluate), `--set classes`, else the training labels once they pass
    the shared free-text check."""
    if fitted is not None:
        return tuple(fitted.class_names)
    if cfg.classes:
        return tuple(cfg.classes)
    check_label_set(examples.labels, source, hint)
    return text_data.class_names_of(examples.labels)


def _from_examples(cfg, fitted, examples: dict, origins: dict, source: str, hint: str) -> _Raw:
    """Raw splits from read examples: validation is the source's own, else carved from train by seed."""
    names = _class_names(cfg, fitted, examples["train"], origins["train"], hint)
    ids = {split: text_data.label_ids(ex, names) for split, ex in examples.items()}
    texts = {split: np.asarray(ex.texts, object) for split, ex in examples.items()}
    if "validation" not in examples:
        tr, va = carve_indices(len(ids["train"]), cfg.val_fraction, cfg.seed, origins["train"])
        all_texts, all_ids = texts["train"], ids["train"]
        texts["train"], ids["train"] = all_texts[tr], all_ids[tr]
        texts["validation"], ids["validation"] = all_texts[va], all_ids[va]
        origins = {**origins, "validation": carved_note(cfg.val_fraction, cfg.seed)}
    splits = {split: (text_data.from_lists(texts[split], ids[split]), len(ids[split])) for split in ids}
    return _Raw(splits, names, source, origins)


def _read_split_files(cfg, files: dict) -> dict:
    return {split: text_data.read_file(path, cfg.text_column, cfg.label_column) for split, path in files.items()}


def _path(cfg, spec, fitted) -> _Raw:
    root = spec.path
    if root.is_file():
        ex = text_data.read_file(root, cfg.text_column, cfg.label_column)
        return _from_examples(cfg, fitted, {"train": ex}, {"train": str(root)}, str(root), LABEL_HINT)
    folders = find_split_folders(root)
    if folders is not None:  # train/ (val/) (test/), each holding class folders
        examples = {split: text_data.read_class_folders(folder) for split, folder in folders.items()}
        return _from_examples(cfg, fitted, examples, {s: str(f) for s, f in folders.items()}, str(root), FOLDER_HINT)
    if any(p.is_dir() and not p.name.startswith(".") for p in root.iterdir()):
        ex = text_data.read_class_folders(root)
        return _from_examples(cfg, fitted, {"train": ex}, {"train": str(root)}, str(root), FOLDER_HINT)
    files = text_data.find_split_files(root)
    if files is None:
        raise DataError(f"--data {root}: expected a CSV/TSV or 'label sentence' file, a folder of class "
                        "sub-folders of .txt files, or a folder with a '*train*' file (and '*dev*', '*test*' files)")
    return _from_examples(cfg, fitted, _read_split_files(cfg, files), {s: str(p) for s, p in files.items()},
                          str(root), LABEL_HINT)


LOADERS = {"embedded": _generated, "tfds": _tfds, "path": _path}


def vocabulary_of(info: DataInfo) -> list:
    """The token vocabulary saved with a run (runs written before `vocabularies` kept it in extra)."""
    return info.vocabularies.get("tokens") or info.extra.get("vocabulary") or []


def _report_empty(empty: dict, counts: dict, cfg) -> None:
    """One line in the run's output when some texts are left with no token (kept as all padding)."""
    if not any(empty.values()):
        return
    parts = ", ".join(f"{empty[s]} of {counts[s]} {s}" for s in counts if empty[s])
    print(f"data: {parts} texts are empty after standardization ({cfg.standardize}); kept as all-padding "
          "examples (data_info.json extra.empty_after_standardization)", flush=True)


def _finish(cfg, raw: _Raw, fitted: DataInfo | None) -> Data:
    if len(raw.class_names) < 2:
        raise DataError(f"--data {cfg.data}: expected at least 2 classes, found {list(raw.class_names)}")
    if cfg.backbone:
        return _finish_with_preset(cfg, raw, fitted)
    standardize = STANDARDIZE[cfg.standardize]
    train_raw, num_train = raw.splits["train"]
    vocab = vocabulary_of(fitted) if fitted is not None else []
    if not vocab:
        vocab = text_data.adapt_vocabulary(train_raw.map(lambda t, y: t), max_tokens=cfg.vocab_size,
                                           sequence_length=cfg.sequence_length, standardize=standardize)
        if len(vocab) <= 2:  # only padding and [UNK]: no training text holds a token
            raise DataError(f"{raw.origins['train']}: all {num_train} training texts are empty after "
                            f"standardization (standardize={cfg.standardize}); nothing to learn from")
    sets = {split: text_data.tokenize(ds, vocab, cfg.sequence_length, standardize, n)
            for split, (ds, n) in raw.splits.items()}
    counts = {split: n for split, (_, n) in raw.splits.items()}
    empty = {split: text_data.count_empty(ds) for split, ds in sets.items()}
    _report_empty(empty, counts, cfg)
    info = DataInfo(
        raw.source, num_train, counts["validation"],
        {"tokens": InputSpec((cfg.sequence_length,), "int32", vocabulary="tokens")},
        len(raw.class_names), tuple(raw.class_names),
        extra={"tokenizer": "keras.layers.TextVectorization", "standardize": cfg.standardize,
               "sequence_length": cfg.sequence_length, "empty_after_standardization": empty},
        num_test=counts.get("test", 0), vocabularies={"tokens": vocab}, splits=raw.origins)
    return Data.from_splits(sets, info)


def _finish_with_preset(cfg, raw: _Raw, fitted: DataInfo | None) -> Data:
    """The preset's tokenizer replaces the learned vocabulary; it is saved in data_info.json (extra)."""
    check_finetune_config(cfg)
    preprocessor = (preset_preprocessor(fitted) if fitted is not None
                    else pretrained.load_text_preprocessor(cfg.backbone, cfg.sequence_length))
    sets = {split: preset_text.tokenize(ds, preprocessor) for split, (ds, _) in raw.splits.items()}
    counts = {split: n for split, (_, n) in raw.splits.items()}
    inputs = {name: InputSpec((cfg.sequence_length,), "int32") for name in preset_text.input_names(preprocessor)}
    info = DataInfo(
        raw.source, counts["train"], counts["validation"], inputs, len(raw.class_names), tuple(raw.class_names),
        extra={"tokenizer": f"keras-hub preset {cfg.backbone}", "sequence_length": cfg.sequence_length,
               "preset_preprocessor": pretrained.preprocessor_to_json(preprocessor)},
        num_test=counts.get("test", 0), splits=raw.origins)
    return Data.from_splits(sets, info)


def preset_preprocessor(info: DataInfo):
    """The fine-tuned run's tokenizer and packer, from its data_info.json."""
    return pretrained.preprocessor_from_json(info.extra["preset_preprocessor"])


def build_datasets(cfg: TextClassificationConfig) -> Data:
    spec = parse_data_spec(cfg.data)
    return _finish(cfg, LOADERS[spec.kind](cfg, spec, None), None)


def rebuild_datasets(cfg: TextClassificationConfig, fitted: DataInfo) -> Data:
    """For evaluate: the saved vocabulary and class order, never re-learned."""
    spec = parse_data_spec(cfg.data)
    return _finish(cfg, LOADERS[spec.kind](cfg, spec, fitted), fitted)


# --- model, loss, metrics --------------------------------------------------------------------------


def build_model(cfg: TextClassificationConfig, info: DataInfo) -> keras.Model:
    check_finetune_config(cfg)
    if cfg.backbone:
        return pretrained.text_classifier(pretrained.load_backbone(cfg.backbone, "text"), cfg.sequence_length,
                                          info.num_classes, dropout=cfg.dropout)
    vocab_size = len(vocabulary_of(info)) or cfg.vocab_size
    return text_models.MODELS[cfg.model](
        vocab_size, cfg.sequence_length, info.num_classes, embedding_dim=cfg.embedding_dim, hidden=cfg.hidden,
        num_heads=cfg.num_heads, num_layers=cfg.num_layers, dropout=cfg.dropout,
        encoder_dropout=cfg.encoder_dropout)


def loss(cfg, info):
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def metric_name(class_name: str) -> str:
    return re.sub(r"\W+", "_", str(class_name)).strip("_") or "class"


def metrics(cfg, info):
    k = info.num_classes
    out = [keras.metrics.SparseCategoricalAccuracy(name="accuracy"), model_metrics.SparseF1Score(k, name="macro_f1")]
    if cfg.per_class_metrics:
        names = info.class_names or tuple(str(i) for i in range(k))
        for i, name in enumerate(names):
            out.append(model_metrics.SparseClassPrecision(i, k, name=f"precision_{metric_name(name)}"))
            out.append(model_metrics.SparseClassRecall(i, k, name=f"recall_{metric_name(name)}"))
    return out


# --- pictures, tables and predictions -------------------------------------------------------------


def detokenize(ids: np.ndarray, vocabulary: list) -> str:
    return " ".join(vocabulary[i] if i < len(vocabulary) else "[UNK]" for i in np.asarray(ids).tolist() if i != 0)


def misclassified_table(ids, true, pred, probs, names, vocabulary, limit: int = 20) -> str:
    """A markdown table (TensorBoard text) of validation texts the model got wrong, as tokenized."""
    wrong = np.flatnonzero(true != pred)
    if not len(wrong):
        return f"no misclassified examples among the first {len(true)} validation texts"
    lines = [f"{len(wrong)} of the first {len(true)} validation texts misclassified (text as the model sees it)",
             "", "| text | true | predicted | p(predicted) |", "|---|---|---|---|"]
    for i in wrong[:limit]:
        text = detokenize(ids[i], vocabulary).replace("|", "\\|")
        lines.append(f"| {text} | {names[true[i]]} | {names[pred[i]]} | {probs[i, pred[i]]:.2f} |")
    return "\n".join(lines)


def visualize(model, batch, info: DataInfo, cfg) -> dict:
    """Confusion matrix (image) and misclassified texts (markdown table) on the first validation texts."""
    x, y = batch
    ids, vocabulary = _ids_and_vocabulary(x, info)
    probs = np.asarray(ops.softmax(model.predict_on_batch(x), axis=-1))
    pred, y = np.argmax(probs, axis=-1), np.asarray(y).reshape(-1)
    names = info.class_names or tuple(str(i) for i in range(info.num_classes))
    cm = confusion_matrix(y, pred, info.num_classes)
    return {"confusion_matrix": confusion_image(cm, names),
            "misclassified": misclassified_table(ids, y, pred, probs, names, vocabulary)}


def _ids_and_vocabulary(x, info: DataInfo) -> tuple:
    if isinstance(x, dict):  # a preset's inputs: token ids index its tokenizer's vocabulary
        return x["token_ids"], preset_preprocessor(info).tokenizer.get_vocabulary()
    return x, vocabulary_of(info)


def sample_inputs(cfg, info: DataInfo, out_dir: Path, n: int) -> list[str]:
    """n sentences of the embedded generator's test stream (predict takes raw texts)."""
    return list(text_data.generated_sentiment(n, cfg.seed, "test")[0])


def predict_outputs(model, inputs: list[str], out_dir: Path, cfg, info: DataInfo, options: dict) -> list[dict]:
    """Label and class probabilities per raw text; also written to predictions.json."""
    texts = [t for t in inputs if t.strip()]
    if not texts:
        raise UserError("predict: give at least one text (as arguments or --input FILE, one text a line)")
    extra = info.extra
    if "preset_preprocessor" in extra:
        ids = preset_text.encode_texts(texts, preset_preprocessor(info))
    else:
        ids = text_data.tokenize_texts(texts, vocabulary_of(info), extra["sequence_length"],
                                       STANDARDIZE[extra.get("standardize", "lower_and_strip_punctuation")])
    probs = np.asarray(ops.softmax(model.predict_on_batch(ids), axis=-1))
    rows = []
    for text, p in zip(texts, probs):
        k = int(np.argmax(p))
        rows.append({"input": text, "label": info.class_names[k], "probability": float(p[k]),
                     "probabilities": {name: round(float(q), 6) for name, q in zip(info.class_names, p)}})
    (out_dir / "predictions.json").write_text(json.dumps(rows, indent=2))
    return rows


# --- export: the SavedModel takes raw strings (the run's vocabulary inside the graph) ----------------
# tf2onnx and the LiteRT converter have no string ops, so ONNX and LiteRT take token ids.


def serving_model(model, cfg, info: DataInfo, fmt: str):
    """Raw strings (SavedModel) or token ids -> the model -> class probabilities."""
    if "preset_preprocessor" in info.extra:
        raise UserError("export: a run fine-tuned from a keras-hub preset cannot be exported yet (its tokenizer is "
                        "not in the graph); use predict, or model.keras with the preset's preprocessor")
    length = info.extra["sequence_length"]
    if fmt == "saved_model":
        texts = keras.Input((), dtype="string", name="texts")
        vectorize = text_data.make_vectorizer(length, vocabulary=vocabulary_of(info),
                                              standardize=STANDARDIZE[info.extra.get("standardize", "lower_and_strip_punctuation")])
        inputs, ids = texts, ops.cast(vectorize(texts), "int32")
    else:
        inputs = ids = keras.Input((length,), dtype="int32", name="tokens")
    probabilities = keras.layers.Softmax(axis=-1, name="probabilities")(model(ids, training=False))
    return keras.Model(inputs, probabilities, name=f"{model.name}_serving")


def _unknown_word(vocabulary: list) -> str:
    """A word outside the vocabulary, so it tokenizes back to [UNK] (id 1)."""
    known, word = set(vocabulary), "unk"
    while word in known:
        word += "x"
    return word


def served_inputs(ids, cfg, info: DataInfo, fmt: str):
    """Token ids as the signature takes them: for the SavedModel, texts that tokenize back to the same ids."""
    if fmt != "saved_model":
        return np.asarray(ids, np.int32)
    vocabulary = vocabulary_of(info)
    words = [""] + [_unknown_word(vocabulary)] + list(vocabulary[2:])
    return np.array([" ".join(words[i] for i in row.tolist() if i) for row in np.asarray(ids)], dtype=object)


def export_signature(fmt: str) -> str:
    if fmt == "saved_model":
        return "raw strings (N,), tokenized inside with the run's vocabulary; returns class probabilities (N, classes)"
    return "int32 token ids (N, sequence_length) (tokenize with the run's vocabulary); returns class probabilities"


register(Task(
    name="text-classification",
    description="text classification (BiLSTM / Transformer encoder / 1D CNN over TextVectorization ids)",
    config_cls=TextClassificationConfig,
    build_datasets=build_datasets,
    rebuild_datasets=rebuild_datasets,
    build_model=build_model,
    loss=loss,
    metrics=metrics,
    default_data="generated 3-class review sentiment (negation, 'but' contrasts, noise words)",
    presets={
        "debug": {"epochs": 1, "num_train": 256, "num_val": 64, "num_test": 32, "batch_size": 32, "vocab_size": 500,
                  "sequence_length": 24, "embedding_dim": 16, "hidden": 16, "log_every_steps": 2,
                  "warmup_steps": 0},
        "sst2": {"model": "bilstm", "epochs": 4, "sequence_length": 48, "vocab_size": 16000,
                 "embedding_dim": 128, "hidden": 64, "dropout": 0.5, "learning_rate": 2e-3, "batch_size": 32},
    },
    visualize=visualize,
    visualize_examples=512,
    predict_outputs=predict_outputs,
    sample_inputs=sample_inputs,
    export=Export(serving_model, served_inputs, export_signature, decision=argmax_decision, decision_name="argmax class",
                  model_outputs=log_probabilities,
                  outside="ONNX/LiteRT: tokenization (string ops do not convert); the SavedModel holds it"),
    best_metric="val_accuracy",
))
