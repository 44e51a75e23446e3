"""Extractive question answering (SQuAD): a reader points at the answer span in the context.

Data: generated paragraphs of facts (default), SQuAD v1.1/v2.0 JSON, JSON Lines, `tfds:squad`.
A regex tokenizer keeps character offsets (pipelines.qa); its vocabulary, learned on the training
split, is saved in data_info.json. Long contexts become overlapping windows; a question's answer is
the best `start <= end` span (at most `max_answer_length` tokens) over all its windows, sliced from
the original context. Validation EM/F1 (official SQuAD rules) pick the best checkpoint; the
sliding-window word-overlap baseline is computed beside them on the same questions.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from errors import DataError, UserError
from pipelines import Data, DataInfo, parse_data_spec
from pipelines import qa_eval
from pipelines.data import InputSpec
from pipelines.splits import carve_indices, carved_note, generated_note
from tasks.base import SplitMetrics, Task, TrainConfig, register
from tasks.lazy import lazy_module

keras = lazy_module("keras")
qa_models = lazy_module("keras_models.qa")
qa_data = lazy_module("pipelines.qa")
text_data = lazy_module("pipelines.text")

MODEL_NAMES = ("bidaf", "transformer")  # keys of keras_models.qa.MODELS


@dataclass(frozen=True)
class QAConfig(TrainConfig):
    model: str = field(default="bidaf", metadata={"choices": MODEL_NAMES, "help": "bidaf | transformer"})
    epochs: int = 4
    batch_size: int = 32
    learning_rate: float = 2e-3
    warmup_steps: int = 50
    max_length: int = field(default=64, metadata={"positive": True, "help": "context tokens per window, incl. the no-answer slot"})
    doc_stride: int = field(default=32, metadata={"positive": True, "help": "tokens between the starts of a context's windows"})
    max_question_length: int = field(default=20, metadata={"positive": True, "help": "question tokens kept"})
    max_answer_length: int = field(default=12, metadata={"positive": True, "help": "longest answer span decoded, in tokens"})
    vocab_size: int = field(default=20000, metadata={"positive": True, "help": "most frequent training tokens kept (incl. specials)"})
    embedding_dim: int = field(default=64, metadata={"positive": True, "help": "token embedding size"})
    hidden: int = field(default=64, metadata={"positive": True, "help": "LSTM units (bidaf) / feed-forward size (transformer)"})
    num_heads: int = field(default=4, metadata={"positive": True, "help": "attention heads (transformer)"})
    num_layers: int = field(default=2, metadata={"positive": True, "help": "encoder blocks (transformer)"})
    dropout: float = field(default=0.2, metadata={"help": "dropout on embeddings and modelling layers"})
    test_data: str = field(default="", metadata={"help": "a SQuAD .json/.jsonl file reported once as the test split "
                                                         "(for --data FILE sources)"})
    num_train: int = field(default=4000, metadata={"help": "generated training questions (embedded data)"})
    num_val: int = field(default=400, metadata={"help": "generated validation questions (embedded data)"})
    num_test: int = field(default=400, metadata={"help": "generated test questions (embedded data; 0 = none)"})
    unanswerable: float = field(default=0.0, metadata={"help": "share of generated questions with no answer in "
                                                               "the paragraph (SQuAD v2.0 style)"})


# --- data ----------------------------------------------------------------------------------------


def _generated(cfg, spec) -> tuple[dict, dict, str]:
    sizes = {"train": cfg.num_train, "validation": cfg.num_val, "test": cfg.num_test}
    splits = {s: qa_data.generated_facts(n, cfg.seed, s, cfg.unanswerable) for s, n in sizes.items() if n}
    return splits, {s: generated_note(s) for s in splits}, "generated facts (people, towns, mountains)"


def _carve(cfg, examples: list, origin: str) -> tuple[list, list]:
    """Validation carved from train by seed, whole contexts at a time (no paragraph in both)."""
    contexts = list(dict.fromkeys(ex.context for ex in examples))
    _, va = carve_indices(len(contexts), cfg.val_fraction, cfg.seed, origin)
    held = {contexts[i] for i in va}
    return [ex for ex in examples if ex.context not in held], [ex for ex in examples if ex.context in held]


def _path(cfg, spec) -> tuple[dict, dict, str]:
    root = spec.path
    if root.is_file():
        files = {"train": root}
    else:
        files = text_data.find_split_files(root)
        if files is None:
            raise DataError(f"--data {root}: expected a SQuAD .json / .jsonl file or a folder with 'train*.json' "
                            "(and 'dev*.json', 'test*.json') files")
    if cfg.test_data:
        if "test" in files:
            raise UserError(f"--set test_data={cfg.test_data}: {root} already has a test file ({files['test']})")
        test = Path(cfg.test_data)
        if not test.is_file():
            raise UserError(f"--set test_data={cfg.test_data}: no such file")
        files["test"] = test
    splits = {s: qa_data.read_file(p) for s, p in files.items()}
    origins = {s: str(p) for s, p in files.items()}
    if "validation" not in splits:
        splits["train"], splits["validation"] = _carve(cfg, splits["train"], str(files["train"]))
        origins["validation"] = carved_note(cfg.val_fraction, cfg.seed) + " by context"
    return splits, origins, str(root)


def _tfds_examples(ds, split: str) -> list:
    out = []
    for row in ds.as_numpy_iterator():
        text = lambda v: v.decode("utf-8") if isinstance(v, bytes) else str(v)  # noqa: E731
        qid = text(row.get("id", len(out)))
        answers = tuple((text(t), int(s)) for t, s in zip(row["answers"]["text"], row["answers"]["answer_start"]))
        context = text(row["context"])
        impossible = bool(row.get("is_impossible", False)) or not answers
        pairs = [{"text": t, "answer_start": s} for t, s in answers]
        out.append(qa_data.QAExample(qid, text(row["question"]), context,
                                     qa_data.checked_answers(f"tfds {split}", qid, context, pairs, impossible),
                                     impossible, f"tfds {split} question {qid!r}"))
    return out


def _tfds(cfg, spec) -> tuple[dict, dict, str]:
    from pipelines import tfds_source

    datasets, counts, tinfo = tfds_source.load_tfds(spec.value)
    missing = [k for k in ("context", "question", "answers") if k not in tinfo.features]
    if missing:
        raise DataError(f"--data tfds:{spec.value}: expected SQuAD features context, question, answers; "
                        f"missing {missing}")
    parts, origins = tfds_source.three_splits(datasets, counts, cfg.val_fraction, cfg.seed, f"tfds:{spec.value}")
    return {s: _tfds_examples(ds, s) for s, (ds, _) in parts.items()}, origins, f"tfds:{spec.value}"


LOADERS = {"embedded": _generated, "tfds": _tfds, "path": _path}


def window_shape(cfg):
    if cfg.doc_stride >= cfg.max_length:
        raise UserError(f"--set doc_stride={cfg.doc_stride}: must be smaller than max_length={cfg.max_length} "
                        "(windows must overlap or touch)")
    return qa_data.WindowShape(cfg.max_length, cfg.doc_stride, cfg.max_question_length)


def _answer_width(examples: list) -> int:
    """Mean answer length in tokens on the training split: the baseline's window width."""
    lengths = [len(qa_data.tokenize(ex.answers[0][0])[0]) for ex in examples if ex.answers]
    return max(1, int(round(float(np.mean(lengths))))) if lengths else 1


def _finish(cfg, splits: dict, origins: dict, source: str, fitted: DataInfo | None) -> Data:
    shape = window_shape(cfg)
    vocab = fitted.vocabularies.get("tokens") if fitted is not None else None
    vocab = vocab or qa_data.learn_vocabulary(splits["train"], cfg.vocab_size)
    windows = {s: qa_data.make_windows(exs, vocab, shape, s) for s, exs in splits.items()}
    for s, w in windows.items():
        if len(w) == 0:
            raise DataError(f"{origins.get(s, s)}: no questions in the {s} split")
    v2 = bool(fitted.extra.get("version_2")) if fitted is not None else \
        any(ex.impossible for ex in splits["train"]) or cfg.unanswerable > 0
    extra = {"tokenizer": "regex: words, single CJK characters, punctuation; character offsets kept",
             "questions": {s: w.questions for s, w in windows.items()},
             "answers_outside_every_window": {s: w.answer_lost for s, w in windows.items()},
             "version_2": v2,
             "baseline_width": fitted.extra["baseline_width"] if fitted is not None else _answer_width(splits["train"])}
    info = DataInfo(
        source, len(windows["train"]), len(windows["validation"]),
        {"question": InputSpec((cfg.max_question_length,), "int32", vocabulary="tokens"),
         "context": InputSpec((cfg.max_length,), "int32", vocabulary="tokens")},
        extra=extra, num_test=len(windows["test"]) if "test" in windows else 0,
        targets={"span": InputSpec((3,), "int32")}, vocabularies={"tokens": vocab}, splits=origins)
    return Data.from_splits({s: qa_data.to_dataset(w) for s, w in windows.items()}, info)


def build_datasets(cfg: QAConfig) -> Data:
    spec = parse_data_spec(cfg.data)
    return _finish(cfg, *LOADERS[spec.kind](cfg, spec), None)


def rebuild_datasets(cfg: QAConfig, fitted: DataInfo) -> Data:
    """For evaluate: the saved vocabulary, v2.0 mode and baseline width, never re-learned."""
    spec = parse_data_spec(cfg.data)
    return _finish(cfg, *LOADERS[spec.kind](cfg, spec), fitted)


# --- model and loss -------------------------------------------------------------------------------


def build_model(cfg: QAConfig, info: DataInfo):
    return qa_models.MODELS[cfg.model](
        len(info.vocabularies["tokens"]), cfg.max_question_length, cfg.max_length, embedding_dim=cfg.embedding_dim,
        hidden=cfg.hidden, num_heads=cfg.num_heads, num_layers=cfg.num_layers, dropout=cfg.dropout)


def loss(cfg, info):
    return qa_models.SpanLoss()


# --- decoding and whole-split metrics -------------------------------------------------------------


@dataclass
class Answer:
    """The best span of one question over its windows, and its no-answer score."""

    example: object  # pipelines.qa.QAExample
    score: float = -np.inf  # log p(start) + log p(end) of the best span
    start: int = 0  # character offsets in the context
    end: int = 0
    null: float = np.inf  # lowest no-answer log-score over the windows
    split: str = ""

    @property
    def text(self) -> str:
        return self.example.context[self.start:self.end]


def window_log_probs(model, x) -> np.ndarray:
    """(B, C, 2) log-softmax over each window's positions."""
    return qa_eval.log_softmax(np.asarray(model.predict_on_batch(x), np.float64), axis=1)


def collect_answers(model, batches, max_answer_length: int) -> dict:
    """{id(example): Answer} from batches of (inputs, uids)."""
    answers: dict = {}
    for x, uids in batches:
        logp = window_log_probs(model, x)
        for k, uid in enumerate(np.asarray(uids).tolist()):
            window = qa_data.WINDOWS[uid]
            ans = answers.setdefault(id(window.example), Answer(window.example, split=window.split))
            ans.null = min(ans.null, float(logp[k, 0, 0] + logp[k, 0, 1]))
            span = qa_eval.best_span(logp[k, :, 0], logp[k, :, 1], len(window.offsets), max_answer_length)
            if span is not None and span.score > ans.score:
                ans.score = span.score
                ans.start = int(window.offsets[span.start - 1, 0])
                ans.end = int(window.offsets[span.end - 1, 1])
    return answers


def _dataset_batches(ds, batch_size: int):
    for x, y in ds.batch(batch_size).as_numpy_iterator():
        yield x, y[:, 2]


def threshold_layer(model):
    return model.get_layer("null_threshold").threshold


def tune_threshold(answers: list) -> float:
    """The no-answer threshold with the best total F1: a question gets '' when null - score > it."""
    gaps = np.array([a.null - a.score for a in answers])
    golds = [[t for t, _ in a.example.answers] for a in answers]
    span_f1 = np.array([qa_eval.best_over_golds(qa_eval.f1, a.text, g) for a, g in zip(answers, golds)])
    empty_f1 = np.array([qa_eval.best_over_golds(qa_eval.f1, "", g) for g in golds])
    order = np.argsort(gaps)
    g, s, e = gaps[order], span_f1[order], empty_f1[order]
    # k questions (smallest gaps) answered, the rest empty
    totals = np.concatenate([[0.0], np.cumsum(s)]) + np.concatenate([np.cumsum(e[::-1])[::-1], [0.0]])
    k = int(np.argmax(totals))
    if k == 0:
        return float(g[0] - 1.0)
    if k == len(g):
        return float(g[-1] + 1.0)
    return float((g[k - 1] + g[k]) / 2)


def predicted_text(ans: Answer, v2: bool, threshold: float) -> str:
    return "" if v2 and ans.null - ans.score > threshold else ans.text


def baseline_text(ex, width: int) -> str:
    tokens, offsets = qa_data.tokenize(ex.context)
    first, last = qa_eval.overlap_baseline(tokens, qa_data.tokenize(ex.question)[0], width)
    return ex.context[offsets[first, 0]:offsets[last, 1]] if last >= first else ""


def split_metrics(model, dataset, cfg, info: DataInfo, report) -> dict:
    """EM/F1 over the questions of a split (+ HasAns/NoAns in v2.0 mode) and the word-overlap
    baseline's EM/F1 on the same questions. On validation the v2.0 threshold is tuned and stored in
    the model (so the checkpoint saved next keeps it); elsewhere the stored one is used."""
    answers = list(collect_answers(model, _dataset_batches(dataset, cfg.batch_size), cfg.max_answer_length).values())
    v2 = bool(info.extra.get("version_2"))
    threshold = 0.0
    if v2:
        if answers and answers[0].split == "validation":
            threshold_layer(model).assign(tune_threshold(answers))
        threshold = float(keras.ops.convert_to_numpy(threshold_layer(model)))
    golds = {id(a.example): [t for t, _ in a.example.answers] for a in answers}
    impossible = {id(a.example): a.example.impossible for a in answers}
    scores = qa_eval.squad_scores({id(a.example): predicted_text(a, v2, threshold) for a in answers}, golds, impossible)
    width = int(info.extra.get("baseline_width", 1))
    base = qa_eval.squad_scores({id(a.example): baseline_text(a.example, width) for a in answers}, golds)
    scores.update({f"baseline_{k}": v for k, v in base.items()})
    if v2:
        scores["null_threshold"] = threshold
    report(f"{len(answers)} questions: " + ", ".join(f"{k} {v:.4f}" for k, v in scores.items()))
    return scores


METRIC_DIRECTIONS = {"exact_match": "up", "f1": "up", "baseline_exact_match": "up", "baseline_f1": "up",
                     "HasAns_exact_match": "up", "HasAns_f1": "up", "NoAns_exact_match": "up", "NoAns_f1": "up",
                     "null_threshold": None}


# --- TensorBoard: a table of fixed validation questions and their start/end probabilities -----------


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")[:120] or "(no answer)"


def answers_table(answers: list, v2: bool, threshold: float) -> str:
    """Markdown: question, gold, predicted answer and its F1 (first window of each question)."""
    lines = ["| question | gold | predicted | F1 |", "|---|---|---|---|"]
    for a in answers:
        golds = [t for t, _ in a.example.answers]
        pred = predicted_text(a, v2, threshold)
        lines.append(f"| {_cell(a.example.question)} | {_cell(golds[0] if golds else '')} | {_cell(pred)} | "
                     f"{qa_eval.best_over_golds(qa_eval.f1, pred, golds):.2f} |")
    return "\n".join(lines)


def probability_image(probs: np.ndarray, targets: np.ndarray, rows: int = 6) -> np.ndarray:
    """Per window two bars rows (start blue, end red) over the context positions; gold cells ringed."""
    from PIL import Image, ImageDraw

    n, length = min(rows, len(probs)), probs.shape[1]
    cell, gap = max(4, 640 // length), 6
    img = Image.new("RGB", (length * cell + 2, n * (2 * cell + gap) + 2), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    for r in range(n):
        for which, colour in ((0, (0, 90, 220)), (1, (220, 40, 40))):
            y0 = 1 + r * (2 * cell + gap) + which * cell
            for p in range(length):
                v = float(probs[r, p, which])
                fill = tuple(int(255 - v * (255 - c)) for c in colour)
                box = [1 + p * cell, y0, p * cell + cell, y0 + cell - 1]
                draw.rectangle(box, fill=fill, outline=(0, 0, 0) if p == targets[r, which] else None)
    return np.asarray(img)


def visualize(model, batch, info: DataInfo, cfg) -> dict:
    x, y = batch
    answers = list(collect_answers(model, [(x, y[:, 2])], cfg.max_answer_length).values())[:16]
    v2 = bool(info.extra.get("version_2"))
    threshold = float(keras.ops.convert_to_numpy(threshold_layer(model))) if v2 else 0.0
    probs = np.exp(window_log_probs(model, {k: v[:6] for k, v in x.items()}))
    return {"questions": answers_table(answers, v2, threshold), "start_end_probabilities": probability_image(probs, y[:6])}


# --- predict -----------------------------------------------------------------------------------------


def _pairs(inputs: list[str], options: dict) -> list[tuple[str, str, str]]:
    """(context, question, where) to answer: JSON objects with context and question (sample inputs,
    JSON Lines given with --input), questions about --context FILE, or a whole --input .json file."""
    inputs = list(inputs)
    pairs = []
    source = options.get("input")
    if source and Path(source).suffix.lower() == ".json":  # the CLI split the file into lines: read it whole
        n_lines = sum(1 for line in Path(source).read_text(encoding="utf-8").splitlines() if line.strip())
        inputs = inputs[:len(inputs) - n_lines]
        pairs += [(c, q, source) for c, q in qa_data.read_pairs(Path(source))]
    context_file = options.get("context")
    context = qa_data.read_text(Path(context_file)) if context_file else None
    for text in inputs:
        if text.lstrip().startswith("{"):
            row = qa_data.load_json("input", text)
            pairs.append((qa_data.field_of(row, "context", str, "input"), qa_data.field_of(row, "question", str, "input"),
                          "input"))
        elif context is None:
            raise UserError(f"predict: question {text[:40]!r} has no context: give --context FILE, or --input a "
                            "JSON/JSONL file of {\"context\", \"question\"}")
        else:
            pairs.append((context, text, context_file))
    if not pairs:
        raise UserError("predict: give questions with --context FILE, or --input a JSON/JSONL file of "
                        "{\"context\", \"question\"}")
    return pairs


def answer_pairs(model, pairs: list, cfg, info: DataInfo) -> list[Answer]:
    examples = [qa_data.QAExample(f"q{i}", q, c) for i, (c, q, _) in enumerate(pairs)]
    windows = qa_data.make_windows(examples, info.vocabularies["tokens"], window_shape(cfg), "predict")
    batches = ((({"question": windows.question[i:i + 64], "context": windows.context[i:i + 64]}),
                windows.target[i:i + 64, 2]) for i in range(0, len(windows), 64))
    found = collect_answers(model, batches, cfg.max_answer_length)
    return [found[id(ex)] for ex in examples]


def predict_outputs(model, inputs: list[str], out_dir: Path, cfg, info: DataInfo, options: dict) -> list[dict]:
    """One row per question: the answer (the context's own substring), its character offsets and
    probability; `null` answer when a v2.0 model finds none."""
    pairs = _pairs(inputs, options)
    v2 = bool(info.extra.get("version_2"))
    threshold = float(keras.ops.convert_to_numpy(threshold_layer(model))) if v2 else 0.0
    rows = []
    for (context, question, where), a in zip(pairs, answer_pairs(model, pairs, cfg, info)):
        empty = predicted_text(a, v2, threshold) == "" and a.text != ""
        rows.append({"question": question, "answer": None if empty else a.text,
                     "start": None if empty else a.start, "end": None if empty else a.end,
                     "score": float(np.exp(a.null if empty else a.score)), "context": where})
    (out_dir / "predictions.json").write_text(json.dumps(rows, indent=2, ensure_ascii=False))
    return rows


def sample_inputs(cfg, info: DataInfo, out_dir: Path, n: int) -> list[str]:
    """n questions (with their paragraphs) of the generator's test stream, as JSON objects."""
    return [json.dumps({"context": ex.context, "question": ex.question})
            for ex in qa_data.generated_facts(n, cfg.seed, "test", cfg.unanswerable)]


register(Task(
    name="question-answering",
    description="extractive question answering, SQuAD v1.1/v2.0 (BiDAF / Transformer reader over windows)",
    config_cls=QAConfig,
    build_datasets=build_datasets,
    rebuild_datasets=rebuild_datasets,
    build_model=build_model,
    loss=loss,
    default_data="generated paragraphs of facts about invented people, towns and mountains (distractors, "
                 "several phrasings)",
    presets={
        "debug": {"epochs": 1, "num_train": 128, "num_val": 32, "num_test": 16, "batch_size": 16, "vocab_size": 400,
                  "embedding_dim": 16, "hidden": 16, "num_heads": 2, "num_layers": 1, "max_length": 40,
                  "doc_stride": 20, "log_every_steps": 2, "warmup_steps": 0},
        "policyqa": {"max_length": 128, "doc_stride": 64, "max_question_length": 24, "max_answer_length": 40,
                     "vocab_size": 8000, "embedding_dim": 64, "hidden": 64, "epochs": 5, "batch_size": 32,
                     "learning_rate": 2e-3, "dropout": 0.3},
    },
    split_metrics=SplitMetrics(directions=METRIC_DIRECTIONS, compute=split_metrics),
    visualize=visualize,
    visualize_examples=32,
    predict_outputs=predict_outputs,
    sample_inputs=sample_inputs,
    best_metric="val_f1",
))
