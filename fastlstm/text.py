"""Character-level language models: a vocabulary, training on raw text, sampling
and word completion."""
import numpy as np

from .data import next_step_rows
from .losses import log_softmax
from .model import Model

__all__ = ["Vocab", "CharLM"]


class Vocab:
    """The characters a model knows; id k stands for chars[k]."""

    def __init__(self, chars):
        if not isinstance(chars, str) or not chars or len(set(chars)) != len(chars):
            raise ValueError("chars: expected a non-empty str of distinct characters")
        self.chars = chars
        self._ids = {c: k for k, c in enumerate(chars)}

    @classmethod
    def from_text(cls, text):
        """Every distinct character of text, sorted."""
        return cls("".join(sorted(set(text))))

    def __len__(self):
        return len(self.chars)

    def encode(self, text):
        """text -> int32 ids (len(text),); a ValueError names unknown characters."""
        try:
            return np.fromiter((self._ids[c] for c in text), dtype=np.int32, count=len(text))
        except KeyError:
            unknown = sorted(set(text) - set(self._ids))
            raise ValueError(f"text: characters not in the vocabulary: {unknown!r}") from None

    def decode(self, ids):
        return "".join(self.chars[k] for k in np.asarray(ids).ravel())


def is_word_char(c):
    return c.isalnum() or c in "'-"


class CharLM:
    """A character-level language model: a Vocab and a token Model over it.

    lm = CharLM.create(text, hidden_size=128); lm.fit(text, epochs=20)
    lm.complete("tri") -> "angle";  lm.generate("the ", 100)
    """

    def __init__(self, vocab, model):
        self.vocab = vocab if isinstance(vocab, Vocab) else Vocab(vocab)
        if not model.takes_tokens or model.layers[0].vocab_size != len(self.vocab):
            raise ValueError(f"model: expected a token model over {len(self.vocab)} chars")
        self.model = model

    @classmethod
    def create(cls, text, **model_kwargs):
        """A fresh model over text's characters; model_kwargs go to Model.for_tokens
        (cell, hidden_size, num_layers, embed_size, seed, dtype, backend)."""
        vocab = Vocab.from_text(text)
        return cls(vocab, Model.for_tokens(len(vocab), **model_kwargs))

    def fit(self, text, *, epochs=10, batch_size=32, seq_len=64, windows_per_row=4,
            **train_kwargs):
        """Train on text by truncated BPTT: the text is cut into rows of
        windows_per_row * seq_len characters; each batch of rows runs window after
        window, carrying the state. Other arguments go to fastlstm.train.
        Returns its History."""
        from .train import train  # not at the top: train imports io, which imports this

        X, Y = next_step_rows(self.vocab.encode(text), windows_per_row * seq_len)
        return train(self.model, X, Y, epochs=epochs, batch_size=batch_size,
                     seq_len=seq_len, **train_kwargs)

    # -- inference ----------------------------------------------------------------

    def _read(self, text, state=None):
        """Log-probabilities of the next character after text (V,), and the state."""
        ids = self.vocab.encode(text)[:, None]
        logits, state, _ = self.model._pass(ids, state, train=False)
        return log_softmax(logits[-1, 0].astype(np.float64)), state

    def _context(self, prefix):
        # A word starts after a line break or a space. A line break first: text
        # after it starts afresh, as the model's zero state does.
        for sep in "\n ":
            if sep in self.vocab.chars and not prefix[:1].isspace():
                return sep + prefix
        return prefix

    def next_char_probs(self, prefix):
        """{char: probability} of the character after prefix."""
        logp, _ = self._read(self._context(prefix))
        return dict(zip(self.vocab.chars, np.exp(logp)))

    def generate(self, prefix="", n=200, temperature=1.0, seed=None):
        """prefix followed by n sampled characters; temperature 0 takes the most
        likely character each time."""
        if temperature < 0:
            raise ValueError(f"temperature: expected >= 0, got {temperature}")
        rng = np.random.default_rng(seed)
        # log-probabilities, then logits: the same up to a constant per step
        scores, state = self._read(self._context(prefix))
        stepper = self.model.stepper(1, state)
        out = []
        for _ in range(n):
            if temperature == 0:
                k = int(np.argmax(scores))
            else:
                # inverse CDF: one uniform draw against the cumulative weights
                p = np.exp((scores - scores.max()) / temperature)
                cdf = np.cumsum(p)
                k = min(int(np.searchsorted(cdf, rng.random() * cdf[-1], side="right")),
                        len(p) - 1)
            out.append(k)
            scores = stepper.step(np.array([k]))[0].astype(np.float64)
        return prefix + self.vocab.decode(out)

    def complete(self, prefix, max_len=30, beam=8):
        """The most likely continuation of prefix's last word, up to the end of the
        word (a character that is not a letter, digit, ' or -), by beam search over
        its probability. complete("tria") -> "ngle"."""
        logp, state = self._read(self._context(prefix))
        stepper = self.model.stepper(1, state)
        beams = [("", 0.0)]
        logps = logp[None]
        done = []
        for _ in range(max_len):
            scores = np.array([s for _, s in beams])[:, None] + logps
            order = np.argsort(scores, axis=None)[::-1][:beam]
            live, rows = [], []
            for flat in order:
                row, k = divmod(int(flat), len(self.vocab))
                c, score = self.vocab.chars[k], float(scores[row, k])
                if is_word_char(c):
                    live.append((beams[row][0] + c, score))
                    rows.append(row)
                else:
                    done.append((beams[row][0], score))
            # Scores only fall as words grow: a finished word better than every
            # live one is the answer.
            best_done = max((s for _, s in done), default=-np.inf)
            if not live or best_done >= live[0][1]:
                break
            beams = live
            stepper.select(rows)
            logits = stepper.step(self.vocab.encode("".join(c[-1] for c, _ in beams)))
            logps = log_softmax(logits.astype(np.float64))
        if not done:
            return beams[0][0]
        return max(done, key=lambda d: d[1])[0]
