"""Character-level language models: a vocabulary, training on raw text, sampling
and word completion."""
import numpy as np

from . import io
from .data import next_step_data
from .losses import log_softmax
from .model import Model
from .train import train

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


# What complete() reads a bare prefix after: texts of CONTEXT_WIDTH characters that
# come before words in the text a CharLM was created from, CONTEXTS of them spread
# evenly over it: a sample of where words start.
CONTEXT_WIDTH = 10
CONTEXTS = 2048
SCORED_CONTEXTS = 64      # the likeliest to come before the prefix, where words are scored
CANDIDATE_CONTEXTS = 8    # the likeliest of all, where beam search finds the candidates
# Without a text to take them from (a CharLM made from a vocabulary and a model).
DEFAULT_CONTEXTS = ("\n", " ", ". ", ", ", "the ", "a ")


def left_contexts(text, width=CONTEXT_WIDTH, n=CONTEXTS):
    """Up to n texts of `width` characters that come before a word in text, spread
    evenly over it."""
    starts = [i for i in range(width, len(text))
              if is_word_char(text[i]) and not is_word_char(text[i - 1])]
    step = max(1, len(starts) // n)
    return [text[i - width:i] for i in starts[::step][:n]]


class CharLM:
    """A character-level language model: a Vocab and a token Model over it.

    lm = CharLM.create(text, hidden_size=128); lm.fit(text, epochs=20)
    lm.complete("tri") -> "angle";  lm.generate("the ", 100)
    fastlstm.save(lm, path) and fastlstm.load(path) keep the vocabulary with it.
    """

    checkpoint_kind = "charlm"

    def __init__(self, vocab, model, contexts=None):
        self.vocab = vocab if isinstance(vocab, Vocab) else Vocab(vocab)
        if not model.takes_tokens or model.layers[0].vocab_size != len(self.vocab):
            raise ValueError(f"model: expected a token model over {len(self.vocab)} chars")
        self.model = model
        known = set(self.vocab.chars)
        self.contexts = [c for c in (contexts or DEFAULT_CONTEXTS)
                         if isinstance(c, str) and set(c) <= known] \
            or [""]

    def checkpoint_extra(self):
        """What a checkpoint holds beside the model (fastlstm.io)."""
        return {"vocab": self.vocab.chars, "contexts": list(self.contexts)}

    @classmethod
    def from_checkpoint(cls, model, extra):
        return cls(extra["vocab"], model, extra.get("contexts"))

    @classmethod
    def create(cls, text, **model_kwargs):
        """A fresh model over text's characters, and a sample of the texts words
        follow in it (complete() reads a prefix after them); model_kwargs go to
        Model.for_tokens (cell, hidden_size, num_layers, embed_size, seed, dtype,
        backend)."""
        vocab = Vocab.from_text(text)
        return cls(vocab, Model.for_tokens(len(vocab), **model_kwargs), left_contexts(text))

    def fit(self, text, *, epochs=10, batch_size=32, seq_len=64, windows_per_row=4,
            validation=None, validation_split=0.0, **train_kwargs):
        """Train on text by truncated BPTT: the text is cut into rows of
        windows_per_row * seq_len characters; each batch of rows runs window after
        window, carrying the state. The validation loss after each epoch is that of
        the text validation, or of the last validation_split of text, which
        training then leaves out. Other arguments go to fastlstm.train; a
        checkpoint it writes holds this CharLM, vocabulary and all.
        Returns its History."""
        X, Y, val = next_step_data(
            self.vocab.encode(text), windows_per_row * seq_len,
            None if validation is None else self.vocab.encode(validation), validation_split)
        return train(self, X, Y, epochs=epochs, batch_size=batch_size, seq_len=seq_len,
                     validation=val, **train_kwargs)

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
        stepper.expect(n)
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
        word (a character that is not a letter, digit, ' or -). complete("tria") ->
        "ngle".

        A word ends with any of the ending characters (a space, '.', ',', ...): its
        probability is that of its letters times the sum over them, so that
        "triangle" does not lose to "triangles" because "triangle" goes on as
        "triangle " in some places and "triangle." in others. A bare prefix (no
        text before it) is read after each of self.contexts, a sample of the texts
        words follow in the training text, and each continuation w is scored by
            sum over contexts c of  P(prefix + w + an ending | c):
        the word most likely to start with prefix where words start in that text,
        not the quirk of one context. Beam search after the contexts likeliest to
        come before the prefix gives the candidates; the SCORED_CONTEXTS likeliest
        are summed (the others add next to nothing)."""
        contexts = [""] if any(not is_word_char(c) for c in prefix) else self.contexts
        word = np.array([is_word_char(c) for c in self.vocab.chars])
        weight, logp, states = self._read_after(contexts, prefix)
        order = np.argsort(weight)[::-1]
        candidates = set()
        for k in order[:CANDIDATE_CONTEXTS]:
            candidates.update(w for w, _ in self._beam(logp[k], _rows(states, [k]), word,
                                                       max_len, beam))
        candidates = sorted(candidates)
        if not candidates:
            return ""
        top = order[:SCORED_CONTEXTS]
        scores = weight[top, None] + self._words_logp(logp[top], _rows(states, top),
                                                     candidates, word)
        return candidates[int(np.argmax(np.logaddexp.reduce(scores, axis=0)))]

    def _read_after(self, contexts, prefix):
        """For each context c: log P(prefix | c), the next character's
        log-probabilities after c + prefix (C, V), and the states there (the model's
        state format, C rows), contexts of one length read as one batch."""
        C = len(contexts)
        weight, logp = np.empty(C), np.empty((C, len(self.vocab)))
        states = None
        for n in sorted({len(c) for c in contexts}):
            rows = [k for k, c in enumerate(contexts) if len(c) == n]
            if n + len(prefix) == 0:
                raise ValueError("prefix: expected at least one character to complete from")
            ids = np.stack([self.vocab.encode(contexts[k] + prefix) for k in rows], axis=1)
            logits, state, _ = self.model._pass(ids, None, train=False)
            lp = log_softmax(logits.astype(np.float64))
            # character j is predicted at step j - 1; the context's first has nothing
            # before it, and the context is given anyway
            steps = range(max(n, 1), n + len(prefix))
            weight[rows] = sum(lp[j - 1, np.arange(len(rows)), ids[j]] for j in steps)
            logp[rows] = lp[-1]
            if states is None:
                states = tuple(tuple(np.empty((s.shape[0], C) + s.shape[2:], s.dtype)
                                     for s in layer) for layer in state)
            for layer, part in zip(states, state):
                for whole, s in zip(layer, part):
                    whole[:, rows] = s
        return weight, logp, states

    def _beam(self, logp, state, word, max_len, beam):
        """Up to `beam` finished words after (logp, state), best first: (word,
        log P(word and an ending))."""
        stepper = self.model.stepper(1, state)
        beams = [("", 0.0)]
        logps = logp[None]
        done = []
        for _ in range(max_len):
            ends = np.logaddexp.reduce(logps[:, ~word], axis=1) if (~word).any() \
                else np.full(len(beams), -np.inf)
            done.extend((text, score + end) for (text, score), end in zip(beams, ends))
            scores = np.array([s for _, s in beams])[:, None] + np.where(word, logps, -np.inf)
            order = np.argsort(scores, axis=None)[::-1][:beam]
            live = [divmod(int(flat), len(self.vocab)) for flat in order
                    if np.isfinite(scores.flat[flat])]
            done.sort(key=lambda d: -d[1])
            del done[beam:]
            # Scores only fall as words grow: once the worst word kept is better
            # than every live one, no live one can get in.
            if not live or (len(done) == beam and done[-1][1] >= scores[live[0]]):
                break
            beams = [(beams[row][0] + self.vocab.chars[k], float(scores[row, k]))
                     for row, k in live]
            stepper.select([row for row, _ in live])
            logits = stepper.step(np.array([k for _, k in live]))
            logps = log_softmax(logits.astype(np.float64))
        return done

    def _words_logp(self, logp, state, words, word):
        """log P(w, then an ending character) (C, W) for each of words after each of
        C states where the next character's log-probabilities are logp (C, V): all
        C * W in one batch, row c * W + w."""
        C, W, L = len(logp), len(words), max(len(w) for w in words)
        stepper = self.model.stepper(C, state)
        stepper.select(np.repeat(np.arange(C), W))
        stepper.expect(L)
        lengths = np.tile([len(w) for w in words], C)
        ids = np.zeros((W, L), np.intp)
        for r, w in enumerate(words):
            ids[r, :len(w)] = self.vocab.encode(w)
        ids = np.tile(ids, (C, 1))
        rows = np.arange(C * W)
        total, ended = np.zeros(C * W), np.full(C * W, -np.inf)
        lp = np.repeat(logp, W, axis=0)
        for i in range(L + 1):
            here = lengths == i
            if (~word).any():
                ended[here] = total[here] + np.logaddexp.reduce(lp[here][:, ~word], axis=1)
            if i == L:
                break
            total += np.where(lengths > i, lp[rows, ids[:, i]], 0.0)
            lp = log_softmax(stepper.step(ids[:, i]).astype(np.float64))
        return ended.reshape(C, W)


def _rows(state, rows):
    """Rows of a model's state (one (num_layers, B, H) array per part of each layer)."""
    return tuple(tuple(s[:, rows] for s in layer) for layer in state)



io.register_kind(CharLM.checkpoint_kind, CharLM.from_checkpoint)
