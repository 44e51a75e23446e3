"""Translation / summarization end to end: learning on a small Anki subset (beats copying the source),
decoding (beam_size=1 = greedy), BLEU/ROUGE as sacreBLEU / rouge-score compute them, the saved
tokenizers reused by evaluate and predict. One small fit shared by every test (module fixture)."""

import json
import time
import zipfile

import numpy as np
import pytest

from conftest import BACKEND, FAST_JIT, shared_data
from tasks.base import get_task, resolve_config

SUBSET = 3000  # Anki pairs whose English side has 3-4 words (the zip is ordered by length)
MARGIN_BLEU = 3.0  # the CI subset's test BLEU must beat copying the source by this many points


def anki_subset(tmp_path) -> str:
    """A TSV of short Anki pairs, written from the shared zip (skips when the data is absent)."""
    zpath = shared_data("anki-spa-eng") / "spa-eng.zip"
    with zipfile.ZipFile(zpath) as zf:
        lines = zf.read("spa.txt").decode("utf-8").splitlines()
    short = [line for line in lines if 3 <= len(line.split("\t")[0].split()) <= 4][:SUBSET]
    path = tmp_path / "anki-short.tsv"
    path.write_text("\n".join(short) + "\n")
    return str(path)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny Transformer trained on the Anki subset (English -> Spanish, 10%/10% held out by seed)."""
    from training.loop import fit

    root = tmp_path_factory.mktemp("seq2seq")
    task = get_task("translation")
    cfg = resolve_config(task, preset="debug", sets=[
        f"data={anki_subset(root)}", FAST_JIT, "epochs=4", "batch_size=32", "learning_rate=3e-3", "warmup_steps=20",
        "test_fraction=0.1", "val_fraction=0.1", "shared_vocab=true", "vocab_size=800", "source_length=12",
        "target_length=14", "width=64", "hidden=128", "num_heads=2", "num_layers=1", "dropout=0.0",
        "metric_examples=300"])
    start = time.perf_counter()
    result = fit(task, cfg, root / "run", verbose=0)
    print(f"\nseq2seq fixture fit on {BACKEND}: {time.perf_counter() - start:.1f}s")
    return task, cfg, result


@pytest.fixture(scope="module")
def parts(run):
    """The trained model's decoding networks, shared so each batch shape compiles once."""
    from keras_models import seq2seq as models

    return models.decoder_parts(run[2].model, run[1].jit_compile)


def test_anki_subset_beats_copying_the_source(run):
    _, _, result = run
    test = result.metrics["test"]
    assert test["checkpoint"] == "best"
    assert test["bleu"] >= test["copy_bleu"] + MARGIN_BLEU, test
    assert test["token_accuracy"] > 0.4, test


def test_greedy_equals_beam_of_one_and_the_full_model_argmax(run, parts):
    """beam_size=1 through the decoding networks = step-by-step argmax of the saved teacher-forced model;
    the key/value-cached Transformer step gives the same tokens and scores as re-running the prefix."""
    import keras

    from keras_models import seq2seq as models
    from training.loop import build_data

    task, cfg, result = run
    model = result.model
    x, _ = next(build_data(task, cfg).val.batch(8).as_numpy_iterator())
    ids, scores = models.decode(model, x["source"], beam_size=1, parts=parts)
    assert parts.cached is not None
    target = np.zeros_like(x["target_in"])
    target[:, 0] = models.START
    for t in range(target.shape[1] - 1):  # the reference: no decoder parts, the whole model each step
        logits = keras.ops.convert_to_numpy(model.predict_on_batch({"source": x["source"], "target_in": target}))
        target[:, t + 1] = np.argmax(logits[:, t], axis=-1)
    for row, ref in zip(ids, target[:, 1:]):
        end = list(ref).index(models.END) + 1 if models.END in ref else len(ref)
        assert list(row[:end]) == list(ref[:end])
    beam3, beam3_scores = models.decode(model, x["source"], beam_size=3, parts=parts)
    assert np.allclose(sequence_log_probs(model, x["source"], beam3), beam3_scores, atol=1e-3)
    assert np.allclose(sequence_log_probs(model, x["source"], ids), scores, atol=1e-3)
    for beams, cached_ids, cached_scores in ((1, ids, scores), (3, beam3, beam3_scores)):
        prefix_ids, prefix_scores = models.decode(model, x["source"], beam_size=beams, parts=parts, use_cache=False)
        assert (prefix_ids == cached_ids).all()
        assert np.allclose(prefix_scores, cached_scores, atol=1e-4)
    # min_length: no [END] before it, and a sequence the model ended at or after it is left as it was.
    ends = [list(row).index(models.END) if models.END in row else len(row) for row in ids]
    longer, _ = models.decode(model, x["source"], beam_size=1, parts=parts, min_length=max(ends) + 1)
    assert all(models.END not in row[:max(ends) + 1] for row in longer)
    kept = [i for i, e in enumerate(ends) if e >= 2]
    at_two, _ = models.decode(model, x["source"], beam_size=1, parts=parts, min_length=2)
    assert kept and all((at_two[i] == ids[i]).all() for i in kept)


def sequence_log_probs(model, source, ids):
    """Sum of the saved model's log-probabilities of each decoded sequence, up to and including [END]."""
    import keras

    from keras_models import seq2seq as models

    target_in = np.zeros((len(ids), model.inputs[1].shape[1]), np.int32)
    target_in[:, 0] = models.START
    target_in[:, 1:ids.shape[1]] = ids[:, :target_in.shape[1] - 1]
    logits = keras.ops.convert_to_numpy(model.predict_on_batch({"source": source, "target_in": target_in}))
    logp = logits - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1, keepdims=True)) - logits.max(-1, keepdims=True)
    out = []
    for row, lp in zip(ids, logp):
        end = list(row).index(models.END) + 1 if models.END in row else len(row)
        out.append(sum(lp[t, row[t]] for t in range(end)))
    return np.asarray(out)


def test_bleu_is_sacrebleu_on_the_decoded_text(run):
    import sacrebleu

    from tasks import seq2seq
    from training.loop import build_data

    task, cfg, result = run
    data = build_data(task, cfg)
    reported = task.split_metrics.compute(result.model, data.val, cfg, data.info, lambda text: None)
    src, tgt = seq2seq._first_examples(data.val, cfg.metric_examples)
    hyps, refs, _ = seq2seq.decoded_texts(result.model, src, tgt, cfg, data.info)
    assert reported["bleu"] == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs]).score)
    assert all(r and "[PAD]" not in r and "##" not in r for r in refs)


def test_rouge_is_rouge_score_and_lead_is_the_first_sentence():
    from rouge_score import rouge_scorer

    from tasks.seq2seq import rouge_metrics

    refs = ["the mayor opens a bridge", "cats sleep all day"]
    hyps = ["mayor opened the bridge", "dogs sleep at night"]
    sources = ["Rain fell. The mayor opened a bridge.", "cats sleep all day. then they eat."]
    got = rouge_metrics(hyps, refs, sources)
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    for key in ("rouge1", "rouge2", "rougeL"):
        assert got[key] == pytest.approx(np.mean([scorer.score(r, h)[key].fmeasure for r, h in zip(refs, hyps)]))
    lead = [scorer.score(r, h)["rougeL"].fmeasure for r, h in zip(refs, ["Rain fell.", "cats sleep all day."])]
    assert got["lead_rougeL"] == pytest.approx(np.mean(lead))


def test_evaluate_and_predict_reuse_the_saved_vocabularies(run, tmp_path, monkeypatch):
    from pipelines import seq2seq as data_module
    from training.inference import evaluate, predict

    task, _, result = run
    saved = json.loads((result.run_dir / "data_info.json").read_text())["vocabularies"]
    assert saved["source"][:4] == ["[PAD]", "[UNK]", "[START]", "[END]"] and len(saved["source"]) > 50

    def relearn(*args, **kwargs):
        raise AssertionError("the vocabulary was learned again")

    monkeypatch.setattr(data_module, "learn_vocabulary", relearn)
    out = evaluate(task, result.run_dir, split="test", which="best", report=lambda text: None)
    assert out["metrics"]["bleu"] == pytest.approx(result.metrics["test"]["bleu"], abs=1e-6)
    rows, out_dir = predict(task, result.run_dir, ["I am happy.", "Tom is here."], out_dir=tmp_path / "p",
                            overrides={"beam_size": 2, "max_decode_length": 3})
    assert [r["input"] for r in rows] == ["I am happy.", "Tom is here."]
    assert all(r["output"] and r["score"] <= 0 and r["beam_size"] == 2 for r in rows)
    assert all(len(r["output"].split()) <= 3 for r in rows)  # max_decode_length=3 pieces at most
    assert json.loads((out_dir / "predictions.json").read_text()) == rows


def test_evaluate_set_changes_decoding_only(run, capsys):
    """`evaluate --set` takes the predict-time keys (decoding settings chosen on validation) and says so."""
    import cli

    run_dir = str(run[2].run_dir)
    assert cli.main(["evaluate", "--run-dir", run_dir, "--set", "max_decode_length=2"]) == 0
    out = json.loads((run[2].run_dir / "eval-validation.json").read_text())
    assert out["overrides"] == {"max_decode_length": 2} and "with --set max_decode_length=2" in capsys.readouterr().out
    assert out["metrics"]["bleu"] < run[2].metrics["validation"]["bleu"]  # two pieces cannot match whole sentences
    assert cli.main(["evaluate", "--run-dir", run_dir, "--set", "width=3"]) == 2
    assert "evaluate --set width: not a predict-time key" in capsys.readouterr().err


@pytest.mark.parametrize("setting, message", [
    ("width=32", "predict --set width: not a predict-time key of task 'translation'"),
    ("beam_size=two", "--set beam_size='two': expected int"),
])
def test_predict_set_takes_only_decode_keys(run, setting, message, capsys):
    """`predict --set` changes decode-time keys only; anything else is one line, before the backend starts."""
    import cli

    code = cli.main(["predict", "--run-dir", str(run[2].run_dir), "--set", setting, "I am happy."])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and message in err, err


def test_tensorboard_gets_the_example_table(run):
    from tasks.seq2seq import visualize
    from training.loop import build_data

    task, cfg, result = run
    data = build_data(task, cfg)
    x, y = next(data.val.batch(4).as_numpy_iterator())
    table = visualize(result.model, (x, y), data.info, cfg)["examples"]
    assert table.splitlines()[0] == "| source | reference | model output |" and len(table.splitlines()) == 6


@pytest.mark.parametrize("attention", ["additive", "dot"])
def test_gru_attention_decodes_and_reloads(attention, tmp_path):
    """The second family wires into the same decoding; its model.keras reloads with the same outputs."""
    import keras

    from keras_models import seq2seq as models

    model = models.build("gru_attention", 40, 50, 8, 9, width=8, hidden=16, dropout=0.0, attention=attention)
    rng = np.random.default_rng(0)
    x = {"source": rng.integers(4, 40, (5, 8)).astype("int32"), "target_in": rng.integers(4, 50, (5, 9)).astype("int32")}
    x["source"][:, 6:] = 0
    ids, scores = models.decode(model, x["source"], beam_size=1)
    wide_ids, wide = models.decode(model, x["source"], beam_size=3)
    assert ids.shape == wide_ids.shape == (5, 9)
    assert np.allclose(sequence_log_probs(model, x["source"], wide_ids), wide, atol=1e-3)
    model.save(tmp_path / "m.keras")
    again = keras.saving.load_model(tmp_path / "m.keras")
    assert np.allclose(again.predict_on_batch(x), model.predict_on_batch(x), atol=1e-5)


def aeslc_subset(root, sizes=(256, 32, 32)) -> str:
    """The first lines of AESLC's train/dev/test JSON Lines, same layout (skips when the data is absent)."""
    source = shared_data("aeslc")
    folder = root / "aeslc-small"
    folder.mkdir()
    for name, n in zip(("train.jsonl", "dev.jsonl", "test.jsonl"), sizes):
        with open(source / name, encoding="utf-8") as f:
            (folder / name).write_text("".join(line for _, line in zip(range(n), f)), encoding="utf-8")
    return str(folder)


def test_aeslc_preset_reports_test_rouge_and_the_lead_baseline(tmp_path):
    """`fit --task summarization --data aeslc --preset aeslc` on a small subset (tiny model): the folder's
    dev/test files are the splits, and the test split gets ROUGE-1/2/L F1 with the lead baseline beside it."""
    from tasks.seq2seq import ROUGE_KEYS
    from training.loop import fit

    task = get_task("summarization")
    cfg = resolve_config(task, preset="aeslc", sets=[
        f"data={aeslc_subset(tmp_path)}", FAST_JIT, "epochs=3", "batch_size=32", "learning_rate=5e-3", "vocab_size=400",
        "source_length=32", "target_length=8", "width=16", "hidden=32", "num_heads=2", "warmup_steps=0",
        "metric_examples=8"])  # 8 = the TensorBoard table's examples: one decoding shape, compiled once
    assert (cfg.source_field, cfg.target_field) == ("email", "subject")
    result = fit(task, cfg, tmp_path / "run", verbose=0)
    info = json.loads((result.run_dir / "data_info.json").read_text())
    assert (info["num_train"], info["num_val"], info["num_test"]) == (256, 32, 32)
    test = result.metrics["test"]
    for key in ROUGE_KEYS:
        assert 0.0 <= test[key] <= 1.0 and 0.0 < test[f"lead_{key}"] < 1.0, test
    assert result.metrics["validation"]["loss"] < result.metrics["first_loss"] - 0.3  # it learned something
