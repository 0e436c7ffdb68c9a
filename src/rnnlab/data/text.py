"""Text: character- and word-level language modelling on any UTF-8 file.

The default corpus needs no download and exists wherever Python does: the English reference text
CPython ships in ``pydoc_data.topics`` (~465 kB). The corpus is cut into contiguous train / val / test
blocks; the vocabulary is built from the training block only (anything else maps to ``<unk>``).
Batches: x (N, T) token indices, y (N, T) the next token at every step.
"""

from __future__ import annotations

import codecs
import json
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from rnnlab.data.loaders import TensorPairs, positive_int
from rnnlab.data.synthetic import GeneratedDataModule, check_seq_len
from rnnlab.data.task import ENCODINGS, TaskSpec
from rnnlab.errors import check_one_of

UNK = "<unk>"
# A small English stop-word list (articles, pronouns, auxiliaries, prepositions, conjunctions).
STOP_WORDS = frozenset(
    """a about above after again against all am an and any are as at be because been before being below
    between both but by can could did do does doing down during each few for from further had has have
    having he her here hers herself him himself his how i if in into is it its itself just me more most my
    myself no nor not now of off on once only or other our ours ourselves out over own same she should so
    some such than that the their theirs them themselves then there these they this those through to too
    under until up very was we were what when where which while who whom why will with would you your
    yours yourself yourselves""".split()
)
WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")


def default_corpus() -> str:
    """CPython's pydoc topics (the language reference's prose), joined in a fixed order."""
    from pydoc_data.topics import topics

    return "\n\n".join(topics[key] for key in sorted(topics))


CORPUS_SNIFF = 1 << 16  # bytes of a corpus checked before a run starts (a binary file fails in its first bytes)


def check_corpus(path: str | None, size: int | None = CORPUS_SNIFF) -> str | None:
    """``data.path``'s text (its first ``size`` bytes, all if None), or ValueError naming it: not a file, empty,
    not UTF-8 text. None for the default corpus."""
    if path is None:
        return None
    file = Path(path).expanduser()
    if not file.is_file():
        raise ValueError(f"data.path={path!r} is not a file; give a UTF-8 text file, or null for the default corpus")
    try:
        with file.open("rb") as stream:
            head = stream.read(-1 if size is None else size)
        # final=False: a sniffed prefix may end inside a character
        text = codecs.getincrementaldecoder("utf-8")().decode(head, final=size is None or len(head) < size)
    except (OSError, UnicodeDecodeError) as error:
        reason = "is not UTF-8 text" if isinstance(error, UnicodeDecodeError) else f"cannot be read ({error.strerror})"
        raise ValueError(
            f"data.path={path!r} {reason}; give a UTF-8 text file, or null for the default corpus"
        ) from None
    if "\x00" in text:
        raise ValueError(f"data.path={path!r} is a binary file; give a UTF-8 text file, or null for the default corpus")
    if not text.strip():
        raise ValueError(f"data.path={path!r} is empty")
    return text


def read_corpus(path: str | None) -> str:
    text = check_corpus(path, size=None)
    return default_corpus() if text is None else text


def char_tokens(text: str, remove_stop_words: bool = False) -> list[str]:
    """Every character (``remove_stop_words`` applies to words only)."""
    return list(text)


def word_tokens(text: str, remove_stop_words: bool = False) -> list[str]:
    """Lower-cased dictionary-like words (letters, optionally one apostrophe), stop words optionally dropped."""
    words = WORD.findall(text.lower())
    return [w for w in words if w not in STOP_WORDS] if remove_stop_words else words


@dataclass(frozen=True)
class TextLevel:
    """How a ``data.level`` splits text into tokens and joins them back, and its per-token metric."""

    split: Callable[[str, bool], list[str]]  # (text, remove_stop_words) -> tokens
    separator: str
    token_metric: str  # reported per token: bpc (bits per character) or ppl (perplexity per word)


LEVELS = {"char": TextLevel(char_tokens, "", "bpc"), "word": TextLevel(word_tokens, " ", "ppl")}


@dataclass
class Vocabulary:
    """A sorted vocabulary with ``<unk>`` at index 0 and the word <-> index maps."""

    tokens: list[str]
    level: str  # "char" | "word": how text is split and joined

    @classmethod
    def build(cls, tokens: Sequence[str], level: str, max_size: int | None = None) -> Vocabulary:
        """From training tokens only; ``max_size`` keeps the most frequent (ties alphabetically), ``<unk>`` included."""
        counts = Counter(tokens)
        kept = sorted(counts, key=lambda t: (-counts[t], t))
        if max_size is not None:
            kept = kept[: max_size - 1]
        return cls([UNK] + sorted(kept), level)

    def __post_init__(self):
        self.index = {token: i for i, token in enumerate(self.tokens)}

    def __len__(self) -> int:
        return len(self.tokens)

    def encode(self, tokens: Sequence[str]) -> torch.Tensor:
        return torch.tensor([self.index.get(t, 0) for t in tokens], dtype=torch.long)

    def decode(self, indices: Sequence[int]) -> str:
        return LEVELS[self.level].separator.join(self.tokens[i] for i in indices)

    def tokenize(self, text: str, remove_stop_words: bool = False) -> list[str]:
        return LEVELS[self.level].split(text, remove_stop_words)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps({"level": self.level, "tokens": self.tokens}, ensure_ascii=False))

    @classmethod
    def load(cls, path: str | Path) -> Vocabulary:
        data = json.loads(Path(path).read_text())
        return cls(data["tokens"], data["level"])


def next_token_windows(ids: torch.Tensor, seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Non-overlapping windows: x (W, T) = ids[t:t+T], y = ids[t+1:t+T+1]."""
    count = (len(ids) - 1) // seq_len
    return ids[: count * seq_len].view(count, seq_len), ids[1 : count * seq_len + 1].view(count, seq_len)


class TextDataModule(GeneratedDataModule):
    """Language modelling on a corpus: character or word level, one-hot or embedding input.

    ``val_fraction`` and ``test_fraction`` of the tokens, at the end of the corpus, are the validation and
    test blocks (contiguous, no overlap). ``vocab_size`` caps the vocabulary (most frequent tokens).
    """

    def __init__(
        self,
        level: str = "char",
        path: str | None = None,
        seq_len: int = 100,
        batch_size: int = 64,
        val_fraction: float = 0.05,
        test_fraction: float = 0.05,
        vocab_size: int | None = None,
        remove_stop_words: bool = False,
        encoding: str = "onehot",
        embedding_dim: int = 32,
        shuffle_seed: int = 0,
    ):
        self.check_arguments(
            level=level,
            path=path,
            seq_len=seq_len,
            batch_size=batch_size,
            val_fraction=val_fraction,
            test_fraction=test_fraction,
            vocab_size=vocab_size,
            encoding=encoding,
            embedding_dim=embedding_dim,
        )
        super().__init__(batch_size, seed=0, shuffle_seed=shuffle_seed)
        text = read_corpus(path)
        tokens = LEVELS[level].split(text, remove_stop_words)
        n_val, n_test = int(len(tokens) * val_fraction), int(len(tokens) * test_fraction)
        blocks = {
            "train": tokens[: len(tokens) - n_val - n_test],
            "val": tokens[len(tokens) - n_val - n_test : len(tokens) - n_test],
            "test": tokens[len(tokens) - n_test :],
        }
        for split, block in blocks.items():
            if len(block) < seq_len + 1:
                raise ValueError(
                    f"the corpus ({len(tokens)} {level} tokens) is too short: the {split} block has {len(block)}, "
                    f"less than one window of data.seq_len={seq_len} plus its target"
                )
        self.vocabulary = Vocabulary.build(blocks["train"], level, vocab_size)
        self.remove_stop_words = remove_stop_words
        self.splits = {
            split: TensorPairs(*next_token_windows(self.vocabulary.encode(block), seq_len))
            for split, block in blocks.items()
        }
        self.task = TaskSpec(
            kind="language_model",
            input_size=len(self.vocabulary),
            seq_len=seq_len,
            output_size=len(self.vocabulary),
            per_step=True,
            generative=True,
            encoding=encoding,
            embedding_dim=embedding_dim,
            token_metric=LEVELS[level].token_metric,
        )

    @classmethod
    def check_arguments(
        cls,
        *,
        level: str,
        path: str | None,
        seq_len: int,
        val_fraction: float,
        test_fraction: float,
        vocab_size: int | None,
        encoding: str,
        embedding_dim: int,
        **arguments,
    ) -> None:
        super().check_arguments(**arguments)
        check_one_of("data.level", level, LEVELS)
        check_one_of("data.encoding", encoding, ENCODINGS)
        if vocab_size is not None and (not isinstance(vocab_size, int) or vocab_size < 2):
            raise ValueError(f"data.vocab_size={vocab_size!r} is not allowed; must be an integer >= 2 (or null)")
        check_seq_len("data.seq_len", seq_len)
        positive_int("data.embedding_dim", embedding_dim)
        for name, fraction in (("data.val_fraction", val_fraction), ("data.test_fraction", test_fraction)):
            if not isinstance(fraction, (int, float)) or not 0 < fraction < 0.5:
                raise ValueError(f"{name}={fraction!r} is not allowed; must be between 0 and 0.5")
        check_corpus(path)
