"""Text: vocabulary, windows, encodings, language-model runs with samples, sampling, errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from helpers import compose_config, read_scalars
from rnnlab.app.generate import generate_from_checkpoint
from rnnlab.app.train import train
from rnnlab.data.text import UNK, TextDataModule, Vocabulary, default_corpus, next_token_windows, word_tokens
from rnnlab.models import build_model
from rnnlab.models.generation import sample_next, sample_text

CORPUS = "the cat sat on the mat. the dog sat on the log. " * 40 + "zebra quiz! " * 5


@pytest.fixture
def corpus(tmp_path) -> Path:
    path = tmp_path / "corpus.txt"
    path.write_text(CORPUS, encoding="utf-8")
    return path


def test_default_corpus_ships_with_python():
    text = default_corpus()
    assert len(text) > 400_000 and text.startswith('The "assert" statement')


def test_vocabulary_comes_from_the_training_block_only(corpus):
    dm = TextDataModule(level="char", path=str(corpus), seq_len=10, val_fraction=0.05, test_fraction=0.05)
    vocab = dm.vocabulary
    # "zebra quiz! " is only at the end of the corpus (val/test blocks): its letters z, q, ! are unknown.
    assert vocab.tokens[0] == UNK and vocab.tokens[1:] == sorted(vocab.tokens[1:])
    assert not {"z", "q", "!"} & set(vocab.tokens)
    test_ids = dm.splits["test"].x
    assert (test_ids == vocab.index[UNK]).any()
    assert vocab.decode(vocab.encode(list("the cat"))) == "the cat"
    assert vocab.decode(vocab.encode(list("zq"))) == UNK + UNK


def test_word_vocabulary_caps_by_frequency_and_drops_stop_words(corpus):
    assert word_tokens("The Cat's HAT, isn't it?") == ["the", "cat's", "hat", "isn't", "it"]
    assert word_tokens("the cat sat on the mat", remove_stop_words=True) == ["cat", "sat", "mat"]
    vocab = Vocabulary.build(["b", "a", "a", "c", "c", "c", "d"], "word", max_size=3)
    assert vocab.tokens == [UNK, "a", "c"]  # the two most frequent, sorted, plus <unk>
    dm = TextDataModule(level="word", path=str(corpus), seq_len=5, vocab_size=4, remove_stop_words=True)
    assert len(dm.vocabulary) == 4 and "the" not in dm.vocabulary.tokens


def test_windows_predict_the_next_token():
    ids = torch.arange(23)
    x, y = next_token_windows(ids, 5)
    assert x.shape == y.shape == (4, 5)
    assert torch.equal(y, x + 1) and torch.equal(x[1:, 0], x[:-1, -1] + 1)


def test_splits_are_contiguous_blocks_without_overlap(corpus):
    dm = TextDataModule(level="char", path=str(corpus), seq_len=10)
    total = sum(len(s.x) for s in dm.splits.values())
    assert total == sum(
        (n - 1) // 10
        for n in (len(CORPUS) - 2 * int(len(CORPUS) * 0.05), int(len(CORPUS) * 0.05), int(len(CORPUS) * 0.05))
    )
    assert dm.task.kind == "language_model" and dm.task.token_metric == "bpc"


@pytest.mark.parametrize("encoding", ["onehot", "embedding"])
def test_both_encodings_feed_the_encoder(make_cfg, corpus, encoding):
    cfg = make_cfg("data=text_char", f"data.path={corpus}", "data.seq_len=10", f"data.encoding={encoding}")
    dm = instantiate(cfg.data)
    model = instantiate(cfg.model, task=dm.task)
    x, y = dm.splits["train"][torch.arange(4)]
    logits = model(x)
    assert logits.shape == (4, 10, len(dm.vocabulary))
    expected_input = len(dm.vocabulary) if encoding == "onehot" else cfg.data.embedding_dim
    assert model.encoder.input_size == expected_input
    assert model.double()(x).dtype == torch.float64  # the one-hot vectors follow the model's dtype


@pytest.mark.parametrize("data, metric", [("text_char", "bpc"), ("text_word", "ppl")])
def test_one_epoch_per_text_task_logs_metric_and_sample(make_cfg, data, metric):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = make_cfg(f"data={data}", "model=gru", "callbacks.text_samples.length=30")
    metrics = train(cfg)
    run_dir = Path(cfg.paths.output_dir)
    assert cfg.optimized_metric == f"val/{metric}_best"
    loss = metrics["test/loss"]
    expected = loss / math.log(2) if metric == "bpc" else math.exp(loss)
    assert metrics[f"test/{metric}"] == pytest.approx(expected, rel=1e-4)
    assert {f"val/{metric}", f"val/{metric}_best", f"test/{metric}"} <= set(read_scalars(run_dir))
    accumulator = EventAccumulator(str(run_dir))
    accumulator.Reload()
    assert "samples/text/text_summary" in accumulator.Tags()["tensors"]
    saved = json.loads((run_dir / "vocab.json").read_text())
    assert saved["tokens"][0] == UNK


def test_sampling_respects_temperature_and_top_k():
    logits = torch.tensor([[[0.0, 3.0, 1.0, -2.0]]])
    assert sample_next(logits, temperature=0).tolist() == [[1]]
    generator = torch.Generator().manual_seed(0)
    draws = {sample_next(logits, 1.0, top_k=2, generator=generator).item() for _ in range(200)}
    assert draws == {1, 2}  # only the two likeliest tokens, both drawn
    with pytest.raises(ValueError, match="temperature=-1"):
        sample_next(logits, -1)


def test_sample_text_is_reproducible_and_starts_with_the_prompt(make_cfg, corpus):
    cfg = make_cfg("data=text_char", f"data.path={corpus}", "data.seq_len=10")
    dm = instantiate(cfg.data)
    model = instantiate(cfg.model, task=dm.task)
    first = sample_text(model, dm.vocabulary, "the ", 20, temperature=1.0, seed=3)
    assert first == sample_text(model, dm.vocabulary, "the ", 20, temperature=1.0, seed=3)
    assert first.startswith("the ") and len(first.replace(UNK, "?")) == 24  # 4 prompt + 20 sampled characters
    with pytest.raises(ValueError, match="no word tokens"):
        sample_text(model, Vocabulary([UNK, "cat"], "word"), "!!!", 5)


def test_generate_command_samples_text_with_the_saved_vocabulary(make_cfg, tmp_path, data_dir):
    cfg = make_cfg("data=text_char", "model=gru")
    train(cfg)
    ckpt = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    gen = compose_config(
        "generate",
        [f"ckpt={ckpt}", "prompt=The assert", "length=50", "temperature=0.8", "top_k=5"],
        tmp_path / "gen",
        data_dir,
    )
    text = generate_from_checkpoint(gen)
    assert text.startswith("The assert") and len(text.replace("<unk>", "?")) == len("The assert") + 50
    assert (tmp_path / "gen" / "sample.txt").read_text(encoding="utf-8") == text


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"path": "/no/such/file.txt"}, r"data.path='/no/such/file.txt' is not a file"),
        ({"path": "EMPTY"}, r"data.path='.*empty.txt' is empty"),
        (
            {"path": "SHORT", "seq_len": 50},
            r"too short: the val block has \d+, less than one window of data.seq_len=50",
        ),
        ({"seq_len": 1}, r"data.seq_len=1 is not allowed"),
        ({"level": "word", "vocab_size": 1}, r"data.vocab_size=1 is not allowed; must be an integer >= 2"),
        ({"encoding": "bytes"}, r"data.encoding='bytes' is not allowed; allowed: embedding, onehot"),
        ({"level": "byte"}, r"data.level='byte' is not allowed; allowed: char, word"),
    ],
)
def test_bad_text_settings_name_the_value(tmp_path, kwargs, match):
    empty, short = tmp_path / "empty.txt", tmp_path / "short.txt"
    empty.write_text("  \n")
    short.write_text("a short corpus " * 20)
    paths = {"EMPTY": str(empty), "SHORT": str(short)}
    kwargs = {k: paths.get(v, v) if isinstance(v, str) else v for k, v in kwargs.items()}
    with pytest.raises(ValueError, match=match):
        TextDataModule(**kwargs)


def test_bidirectional_language_model_is_refused(make_cfg, corpus):
    cfg = make_cfg("data=text_char", f"data.path={corpus}", "data.seq_len=10", "model.bidirectional=true")
    dm = instantiate(cfg.data)
    with pytest.raises(ValueError, match="must be unidirectional"):
        build_model(dm.task, cell="gru", bidirectional=True)
