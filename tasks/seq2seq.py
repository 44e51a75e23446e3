"""Translation and summarization: one sequence-to-sequence implementation registered twice.

Data: a generated language pair (translation) or generated news (summarization) by default; a
`source<TAB>target` TSV/CSV (read straight from a .zip, e.g. Anki's spa-eng.zip); two aligned
plain-text files `train.<source_lang>` / `train.<target_lang>` (+ `val.*`/`dev.*`, `test.*`); JSON Lines
with `source_field` / `target_field` (a file, or a folder of `*train*`/`*dev*`/`*test*` files); a
folder of two parallel trees of .txt files; TFDS translation / summarization sets.

Tokenization: keras-hub WordPiece vocabularies learned on the training split only (source and
target separately, or one shared), applied in tf.data, saved in data_info.json. Models are trained
with teacher forcing; BLEU (sacreBLEU) or ROUGE (rouge-score) come from decoding a capped number of
validation examples at every epoch end, and pick the best checkpoint.
"""

from __future__ import annotations

import json
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from errors import DataError, UserError
from pipelines import Data, DataInfo, parse_data_spec
from pipelines.data import InputSpec, split_counts
from pipelines.seq2seq_sources import (Pairs, first_sentence, generated_news, generated_translation,
                                       read_aligned, read_delimited_pairs, read_jsonl_pairs, read_parallel_trees)
from pipelines.splits import carved_note, generated_note, generated_sizes
from tasks.base import SplitMetrics, Task, TrainConfig, register
from tasks.lazy import lazy_module

keras = lazy_module("keras")
s2s_models = lazy_module("keras_models.seq2seq")
s2s_data = lazy_module("pipelines.seq2seq")

MODEL_NAMES = ("transformer", "gru_attention")  # keys of keras_models.seq2seq.FAMILIES


@dataclass(frozen=True)
class Seq2SeqConfig(TrainConfig):
    model: str = field(default="transformer", metadata={"choices": MODEL_NAMES,
                                                         "help": "transformer | gru_attention"})
    epochs: int = 4
    batch_size: int = 64
    learning_rate: float = 2e-3
    warmup_steps: int = 300
    weight_decay: float = 1e-4
    clipnorm: float = 1.0
    source_length: int = field(default=32, metadata={"positive": True, "help": "source tokens (longer sources are cut)"})
    target_length: int = field(default=32, metadata={"positive": True, "help": "target tokens incl. [START] (longer targets are cut)"})
    vocab_size: int = field(default=1000, metadata={"positive": True, "help": "WordPiece vocabulary size (source, or shared)"})
    target_vocab_size: int = field(default=0, metadata={"help": "target WordPiece vocabulary size (0 = vocab_size)"})
    shared_vocab: bool = field(default=False, metadata={"help": "one vocabulary learned on sources and targets"})
    lowercase: bool = field(default=True, metadata={"help": "lowercase before WordPiece (BLEU/ROUGE then compare lowercased text)"})
    width: int = field(default=64, metadata={"positive": True, "help": "embedding / model width"})
    hidden: int = field(default=128, metadata={"positive": True, "help": "Transformer feed-forward size / GRU units"})
    num_heads: int = field(default=4, metadata={"positive": True, "help": "attention heads (transformer)"})
    num_layers: int = field(default=2, metadata={"positive": True, "help": "encoder and decoder layers (transformer)"})
    dropout: float = field(default=0.0, metadata={"help": "dropout inside the blocks (element-wise dropout slows XLA on CPU)"})
    label_smoothing: float = field(default=0.1, metadata={"help": "label smoothing of the token cross-entropy"})
    attention: str = field(default="additive", metadata={"choices": ("additive", "dot"),
                                                          "help": "gru_attention: additive (Bahdanau) or dot-product"})
    copy: bool = field(default=False, metadata={
        "help": "pointer-generator copy head: each token generated or copied from the source (needs shared_vocab=true)"})
    beam_size: int = field(default=1, metadata={"positive": True, "help": "beams when decoding (1 = greedy)"})
    max_decode_length: int = field(default=0, metadata={"help": "decoded tokens at most (0 = target_length)"})
    min_decode_length: int = field(default=0, metadata={
        "help": "decoded tokens at least before [END] may end the output (0 = no minimum; choose it on validation)"})
    decode_cache: bool = field(default=True, metadata={
        "help": "transformer: decode one token per step over a key/value cache (false: re-run the prefix each step)"})
    metric_examples: int = field(default=500, metadata={"help": "validation examples decoded for BLEU/ROUGE each epoch (0 = all)"})
    decode_batch_size: int = field(default=256, metadata={"positive": True, "help": "sequences per decoding call"})
    num_train: int = field(default=20000, metadata={"help": "generated training pairs (embedded data)"})
    num_val: int = field(default=1000, metadata={"help": "generated validation pairs (embedded data)"})
    num_test: int = field(default=1000, metadata={"help": "generated test pairs (embedded data; 0 = none)"})
    test_fraction: float = field(default=0.0, metadata={
        "help": "share of a single-file source held out as test, by seed (0 = no test split)"})
    reverse: bool = field(default=False, metadata={"help": "swap source and target (e.g. Anki English->Spanish files)"})
    source_field: str = field(default="source", metadata={"help": "JSONL field / TFDS feature holding the source"})
    target_field: str = field(default="target", metadata={"help": "JSONL field / TFDS feature holding the target"})
    source_lang: str = field(default="en", metadata={"help": "aligned files: suffix of the source files (train.en)"})
    target_lang: str = field(default="de", metadata={"help": "aligned files: suffix of the target files (train.de)"})


@dataclass(frozen=True)
class SummarizationConfig(Seq2SeqConfig):
    source_length: int = 96
    target_length: int = 24
    vocab_size: int = 1000
    shared_vocab: bool = True
    num_train: int = 8000
    num_val: int = 500
    num_test: int = 500
    epochs: int = 6
    source_field: str = "article"
    target_field: str = "summary"


# --- data ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Kind:
    """What differs between the two tasks: the generated data and the whole-split metrics."""

    generate: Callable[[int, int, str], Pairs]
    metrics: Callable[[list, list, list], dict]  # (hypotheses, references, sources) -> {name: value}


def _generated(cfg, kind: Kind, spec):
    splits = {s: kind.generate(n, cfg.seed, s) for s, n in generated_sizes(cfg).items()}
    return splits, {s: generated_note(s) for s in splits}, f"generated ({kind.generate.__name__})"


def _carve(pairs: Pairs, cfg, name: str) -> tuple[dict, dict]:
    """train / validation / (test) from one source by seed: disjoint slices of val_fraction, test_fraction."""
    n = len(pairs)
    order = np.random.default_rng([cfg.seed, 7919]).permutation(n)
    n_test = int(round(n * cfg.test_fraction)) if cfg.test_fraction > 0 else 0
    _, n_val = split_counts(n - n_test, cfg.val_fraction, name)
    parts = {"test": order[:n_test], "validation": order[n_test:n_test + n_val], "train": order[n_test + n_val:]}
    origins = {"train": name, "validation": carved_note(cfg.val_fraction, cfg.seed)}
    if n_test:
        origins["test"] = f"carved from {name} ({cfg.test_fraction:.0%}, seed {cfg.seed})"
    return {s: pairs.subset(np.sort(idx)) for s, idx in parts.items() if len(idx)}, origins


def _with_splits(found: dict, cfg, name: str) -> tuple[dict, dict]:
    """{split: Pairs} of a source with its own split files; validation carved from train if absent."""
    if "validation" in found:
        return found, {s: f"{s} split" for s in found}
    splits, origins = _carve(found["train"], cfg, name)
    if "test" in found:
        splits["test"], origins["test"] = found["test"], "test split"
    return splits, origins


SPLIT_STEMS = {"train": ("train",), "validation": ("val", "valid", "dev"), "test": ("test",)}


def _aligned_files(root: Path, cfg) -> dict | None:
    files = {}
    for split, stems in SPLIT_STEMS.items():
        for stem in stems:
            src, tgt = root / f"{stem}.{cfg.source_lang}", root / f"{stem}.{cfg.target_lang}"
            if src.is_file() or tgt.is_file():
                if not (src.is_file() and tgt.is_file()):
                    missing = tgt if src.is_file() else src
                    raise DataError(f"{missing}: missing (aligned files come in pairs: {src.name} and {tgt.name})")
                files[split] = (src, tgt)
                break
    return files or None


def _jsonl_files(root: Path) -> dict | None:
    files = {p: p.stem.lower() for p in sorted(root.iterdir()) if p.suffix.lower() in (".jsonl", ".json")}
    found = {split: next((p for p, stem in files.items() if any(k in stem for k in keys)), None)
             for split, keys in SPLIT_STEMS.items()}
    return {s: p for s, p in found.items() if p} if found["train"] else None


def _trees(root: Path, cfg) -> tuple[Path, Path] | None:
    subdirs = [p for p in sorted(root.iterdir()) if p.is_dir() and not p.name.startswith((".", "_"))]
    if len(subdirs) != 2:
        return None
    is_target = [p.name.lower() == cfg.target_field.lower() or "summar" in p.name.lower() for p in subdirs]
    if sum(is_target) != 1:
        raise DataError(f"{root}: two folders {[p.name for p in subdirs]}; name the target tree with "
                        "--set target_field=FOLDER")
    return (subdirs[1], subdirs[0]) if is_target[0] else (subdirs[0], subdirs[1])


def _read_file(path: Path, cfg) -> Pairs:
    if path.suffix.lower() in (".jsonl", ".json"):
        return read_jsonl_pairs(path, cfg.source_field, cfg.target_field)
    return read_delimited_pairs(path)


def _path(cfg, kind: Kind, spec):
    root = spec.path
    if root.is_file():
        splits, origins = _carve(_read_file(root, cfg), cfg, str(root))
        return splits, origins, str(root)
    aligned = _aligned_files(root, cfg)
    if aligned:
        found = {s: read_aligned(src, tgt) for s, (src, tgt) in aligned.items()}
    elif (jsonl := _jsonl_files(root)) is not None:
        found = {s: read_jsonl_pairs(p, cfg.source_field, cfg.target_field) for s, p in jsonl.items()}
    elif (trees := _trees(root, cfg)) is not None:
        found = {"train": read_parallel_trees(*trees)}
    else:
        raise DataError(f"--data {root}: expected train.{cfg.source_lang} + train.{cfg.target_lang} files, "
                        "*train*.jsonl (+ *dev*, *test*) files, or two parallel folders of .txt files")
    splits, origins = _with_splits(found, cfg, str(root))
    return splits, origins, str(root)


def _tfds_fields(cfg, features, supervised) -> tuple[str, str]:
    names = list(features)
    if cfg.source_field in names and cfg.target_field in names:
        return cfg.source_field, cfg.target_field
    if supervised:
        return tuple(supervised)
    raise DataError(f"--data tfds: no features {cfg.source_field!r}/{cfg.target_field!r} (has {names}); choose them "
                    "with --set source_field=NAME target_field=NAME")


def _tfds(cfg, kind: Kind, spec):
    from pipelines import tfds_source

    datasets, counts, tinfo = tfds_source.load_tfds(spec.value)
    src_key, tgt_key = _tfds_fields(cfg, tinfo.features, tinfo.supervised_keys)
    found = {}
    for split, ds in datasets.items():
        pairs = Pairs()
        for i, ex in enumerate(ds.as_numpy_iterator()):
            pairs.add(ex[src_key].decode("utf-8"), ex[tgt_key].decode("utf-8"), f"tfds:{spec.value} {split} example {i}")
        found[split] = pairs
    splits, origins = _with_splits(found, cfg, f"tfds:{spec.value}")
    return splits, origins, f"tfds:{spec.value}"


LOADERS = {"embedded": _generated, "path": _path, "tfds": _tfds}


def _vocabularies(cfg, train: Pairs) -> dict:
    """WordPiece vocabularies learned on the training pairs only."""
    learn = lambda texts, size: s2s_data.learn_vocabulary(texts, size, cfg.lowercase)  # noqa: E731
    if cfg.shared_vocab:
        shared = learn(train.sources + train.targets, cfg.vocab_size)
        return {"source": shared, "target": shared}
    return {"source": learn(train.sources, cfg.vocab_size),
            "target": learn(train.targets, cfg.target_vocab_size or cfg.vocab_size)}


def _finish(cfg, splits: dict, origins: dict, source: str, fitted: DataInfo | None) -> Data:
    vocabs = dict(fitted.vocabularies) if fitted is not None and fitted.vocabularies else _vocabularies(cfg, splits["train"])
    sets = s2s_data.encode(splits, vocabs, cfg.source_length, cfg.target_length, cfg.lowercase)
    spec = lambda n, v: InputSpec((n,), "int32", vocabulary=v)  # noqa: E731
    info = DataInfo(
        source, len(splits["train"]), len(splits["validation"]),
        {"source": spec(cfg.source_length, "source"), "target_in": spec(cfg.target_length, "target")},
        targets={"target_out": spec(cfg.target_length, "target")},
        num_test=len(splits["test"]) if "test" in splits else 0, vocabularies=vocabs, splits=origins,
        extra={"tokenizer": "keras_hub WordPieceTokenizer", "lowercase": cfg.lowercase,
               "shared_vocab": cfg.shared_vocab, "reserved_tokens": s2s_data.RESERVED})
    return Data.from_splits(sets, info)


def read_splits(cfg, kind: Kind) -> tuple[dict, dict, str]:
    """({split: Pairs}, {split: origin}, source name) of `--data`, before tokenization."""
    spec = parse_data_spec(cfg.data)
    splits, origins, source = LOADERS[spec.kind](cfg, kind, spec)
    if cfg.reverse:
        return {s: p.swapped() for s, p in splits.items()}, origins, source + " (reversed)"
    return splits, origins, source


def _build_datasets(kind: Kind):
    def build(cfg) -> Data:
        return _finish(cfg, *read_splits(cfg, kind), None)

    def rebuild(cfg, fitted: DataInfo) -> Data:
        return _finish(cfg, *read_splits(cfg, kind), fitted)

    return build, rebuild


# --- model, loss, metrics ----------------------------------------------------------------------------------


def build_model(cfg, info: DataInfo):
    if cfg.copy and not cfg.shared_vocab:
        raise UserError("--set copy=true needs --set shared_vocab=true (a copied source token must be a target token)")
    return s2s_models.build(cfg.model, len(info.vocabularies["source"]), len(info.vocabularies["target"]),
                            cfg.source_length, cfg.target_length, width=cfg.width, hidden=cfg.hidden,
                            num_heads=cfg.num_heads, num_layers=cfg.num_layers, dropout=cfg.dropout,
                            attention=cfg.attention, copy=cfg.copy)


def loss(cfg, info):
    return s2s_models.MaskedSequenceLoss(label_smoothing=cfg.label_smoothing)


def metrics(cfg, info):
    return [s2s_models.MaskedTokenAccuracy()]


_PARTS = weakref.WeakKeyDictionary()  # model -> DecoderParts: built (and XLA-compiled) once per model


def decode_ids(model, source_ids, cfg):
    """Decoded target ids and beam scores for source ids, with the run's beam size and length cap."""
    if model not in _PARTS:
        _PARTS[model] = s2s_models.decoder_parts(model, cfg.jit_compile)
    return s2s_models.decode(model, source_ids, beam_size=cfg.beam_size, max_length=cfg.max_decode_length,
                             batch_size=cfg.decode_batch_size, parts=_PARTS[model], use_cache=cfg.decode_cache,
                             min_length=cfg.min_decode_length)


def _first_examples(dataset, n: int):
    """(source ids, target_out ids) of the first n examples (all when n = 0) as numpy."""
    ds = dataset.take(n) if n else dataset
    sources, targets = [], []
    for x, y in ds.batch(1024).as_numpy_iterator():
        sources.append(x["source"])
        targets.append(y)
    return np.concatenate(sources), np.concatenate(targets)


def decoded_texts(model, source_ids, target_ids, cfg, info) -> tuple[list, list, list]:
    """(hypotheses, references, sources) as detokenized text."""
    ids, _ = decode_ids(model, source_ids, cfg)
    tgt_vocab, src_vocab = info.vocabularies["target"], info.vocabularies["source"]
    hyps = [s2s_data.detokenize(row, tgt_vocab) for row in ids]
    refs = [s2s_data.detokenize(row, tgt_vocab) for row in target_ids]
    srcs = [s2s_data.detokenize(row, src_vocab) for row in source_ids]
    return hyps, refs, srcs


def bleu_metrics(hyps: list, refs: list, sources: list) -> dict:
    """Corpus BLEU (sacreBLEU, 13a tokenization) of the model and of copying the source."""
    import sacrebleu

    return {"bleu": sacrebleu.corpus_bleu(hyps, [refs]).score,
            "copy_bleu": sacrebleu.corpus_bleu(sources, [refs]).score}


ROUGE_KEYS = ("rouge1", "rouge2", "rougeL")


def rouge_f1(hyps: list, refs: list) -> dict:
    """Mean ROUGE-1/2/L F1 (rouge-score, Porter stemming) over the examples."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(list(ROUGE_KEYS), use_stemmer=True)
    totals = dict.fromkeys(ROUGE_KEYS, 0.0)
    for h, r in zip(hyps, refs):
        for k, s in scorer.score(r, h).items():
            totals[k] += s.fmeasure
    return {k: v / max(1, len(refs)) for k, v in totals.items()}


def rouge_metrics(hyps: list, refs: list, sources: list) -> dict:
    """ROUGE of the model, and of the lead baseline (the source's first sentence as its summary)."""
    lead = rouge_f1([first_sentence(s) for s in sources], refs)
    return {**rouge_f1(hyps, refs), **{f"lead_{k}": v for k, v in lead.items()}}


def example_table(sources, refs, hyps, limit: int = 8) -> str:
    """Markdown: source | reference | model output (TensorBoard text, evaluate's report)."""
    cell = lambda t: t.replace("|", "\\|")  # noqa: E731
    lines = ["| source | reference | model output |", "|---|---|---|"]
    lines += [f"| {cell(s)} | {cell(r)} | {cell(h)} |" for s, r, h in list(zip(sources, refs, hyps))[:limit]]
    return "\n".join(lines)


def _split_metrics(kind: Kind) -> Callable:
    def compute(model, dataset, cfg, info, report) -> dict:
        source_ids, target_ids = _first_examples(dataset, cfg.metric_examples)
        hyps, refs, srcs = decoded_texts(model, source_ids, target_ids, cfg, info)
        report(f"{len(refs)} examples decoded (beam_size={cfg.beam_size})\n" + example_table(srcs, refs, hyps, 5))
        return kind.metrics(hyps, refs, srcs)
    return compute


def visualize(model, batch, info: DataInfo, cfg) -> dict:
    x, y = batch
    hyps, refs, srcs = decoded_texts(model, x["source"], y, cfg, info)
    return {"examples": example_table(srcs, refs, hyps, len(refs))}


# --- predict -------------------------------------------------------------------------------------------------


def predict_outputs(model, inputs: list[str], out_dir: Path, cfg, info: DataInfo, options: dict) -> list[dict]:
    """Output text and beam score (sum of token log-probabilities) per input; also predictions.json."""
    texts = [t.strip() for t in inputs if t.strip()]
    if not texts:
        raise UserError("predict: give at least one text (as arguments or --input FILE, one text a line)")
    ids = s2s_data.encode_sources(texts, info.vocabularies["source"], cfg.source_length, cfg.lowercase)
    out, scores = decode_ids(model, ids, cfg)
    vocab = info.vocabularies["target"]
    rows = [{"input": t, "output": s2s_data.detokenize(o, vocab), "score": round(float(s), 4),
             "beam_size": cfg.beam_size} for t, o, s in zip(texts, out, scores)]
    (out_dir / "predictions.json").write_text(json.dumps(rows, indent=2, ensure_ascii=False))
    return rows


def _sample_inputs(kind: Kind):
    def sample(cfg, info, out_dir, n):
        pairs = kind.generate(n, cfg.seed, "test")
        return list(pairs.targets if cfg.reverse else pairs.sources)
    return sample


# --- registration ---------------------------------------------------------------------------------------------

DEBUG = {"epochs": 1, "num_train": 256, "num_val": 32, "num_test": 32, "batch_size": 32, "vocab_size": 300,
         "width": 16, "hidden": 32, "num_heads": 2, "num_layers": 1, "log_every_steps": 2, "warmup_steps": 0,
         "metric_examples": 16}


PREDICT_KEYS = ("beam_size", "max_decode_length", "min_decode_length", "decode_batch_size", "decode_cache")  # `predict --set`


def make_task(name: str, description: str, config_cls, kind: Kind, directions: dict, best: str,
              default_data: str, presets: dict) -> Task:
    build, rebuild = _build_datasets(kind)
    return Task(
        name=name, description=description, config_cls=config_cls, build_datasets=build, rebuild_datasets=rebuild,
        build_model=build_model, loss=loss, metrics=metrics, default_data=default_data, presets=presets,
        visualize=visualize, visualize_examples=8, predict_outputs=predict_outputs,
        sample_inputs=_sample_inputs(kind), best_metric=best, predict_keys=PREDICT_KEYS,
        split_metrics=SplitMetrics(directions=directions, compute=_split_metrics(kind)))


TRANSLATION = Kind(generated_translation, bleu_metrics)
SUMMARIZATION = Kind(generated_news, rouge_metrics)

register(make_task(
    "translation", "sequence-to-sequence translation (Transformer / GRU + attention, WordPiece, BLEU)",
    Seq2SeqConfig, TRANSLATION, {"bleu": "up", "copy_bleu": "up"}, "val_bleu",
    "generated English -> invented language (SOV order, agreement, number words -> digits), 20k pairs",
    {"debug": DEBUG,
     # sized to train on 2 CPU cores in under 30 minutes (README has the measured run)
     "anki": {"epochs": 3, "val_fraction": 0.02, "test_fraction": 0.02, "reverse": False, "vocab_size": 6000,
              "target_vocab_size": 6000, "source_length": 20, "target_length": 22, "width": 128, "hidden": 512,
              "num_heads": 4, "num_layers": 1, "batch_size": 128, "learning_rate": 2e-3, "warmup_steps": 400}}))

register(make_task(
    "summarization", "sequence-to-sequence summarization (Transformer / GRU + attention, WordPiece, ROUGE)",
    SummarizationConfig, SUMMARIZATION,
    {**{k: "up" for k in ROUGE_KEYS}, **{f"lead_{k}": "up" for k in ROUGE_KEYS}}, "val_rougeL",
    "generated news paragraphs (key facts among distractor sentences) -> one-line summaries",
    {"debug": {**DEBUG, "source_length": 96, "target_length": 24},
     # sized for 2 CPU cores (README has the measured run): the e-mail cut to its first 64 WordPiece tokens;
     # a copy head, since subject lines mostly reuse the e-mail's words (names, places, numbers)
     "aeslc": {"source_field": "email", "target_field": "subject", "source_length": 64, "target_length": 16,
               "vocab_size": 4000, "epochs": 4, "copy": True, "width": 64, "hidden": 256, "num_heads": 4,
               "num_layers": 1, "batch_size": 64, "learning_rate": 3e-3, "warmup_steps": 200}}))
