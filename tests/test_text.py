"""The character model: vocabulary, learning the seed example, completion."""
import numpy as np
import pytest

from fastlstm import CharLM, Vocab


def test_vocab_round_trip_and_unknown_characters():
    v = Vocab.from_text("banana!")
    assert v.chars == "!abn"
    ids = v.encode("nab")
    assert ids.tolist() == [3, 1, 2] and v.decode(ids) == "nab"
    with pytest.raises(ValueError, match="'z'"):
        v.encode("zebra")


@pytest.fixture(scope="module")
def name_model():
    text = "name " * 200
    lm = CharLM.create(text, hidden_size=16, embed_size=8, seed=0)
    lm.fit(text, epochs=4, batch_size=8, seq_len=20, lr=0.02, progress=False)
    return lm


@pytest.mark.parametrize("prefix, expected", [("n", "a"), ("na", "m"), ("nam", "e")])
def test_char_model_learns_name(name_model, prefix, expected):
    """After n predict a, after a predict m, after m predict e."""
    probs = name_model.next_char_probs(prefix)
    assert max(probs, key=probs.get) == expected
    assert probs[expected] > 0.9
    assert sum(probs.values()) == pytest.approx(1.0)


def test_complete_and_generate(name_model):
    assert name_model.complete("na") == "me"
    assert name_model.complete("n") == "ame"
    assert name_model.generate("na", 8, temperature=0) == "name name "
    a, b = (name_model.generate("", 30, temperature=1.0, seed=5) for _ in range(2))
    assert a == b and len(a) == 30


class TableModel:
    """Stands in for a CharLM's model: the next character's probabilities after
    each continuation, from a table (what complete() sees of a model)."""

    def __init__(self, vocab, table):
        self.vocab, self.table = vocab, table

    def logp(self, word):
        p = self.table.get(word, {" ": 1.0})
        return np.log(np.array([p.get(c, 1e-12) for c in self.vocab.chars]))

    def stepper(self, batch_size, state):
        model = self

        class Stepper:
            words = [""] * batch_size

            def select(self, rows):
                self.words = [self.words[r] for r in rows]

            def expect(self, steps):
                pass

            def step(self, ids):
                self.words = [w + model.vocab.chars[k] for w, k in zip(self.words, ids)]
                return np.stack([model.logp(w) for w in self.words])
        return Stepper()


def test_complete_sums_every_way_a_word_can_end(monkeypatch):
    """"a" ends with ' ' or '.' (0.25 each) and goes on to "ab" with 0.5; "ab" ends
    with ' ' at 0.9. Whole words: "a" 0.7 * 0.5 = 0.35, "ab" 0.7 * 0.5 * 0.95 =
    0.3325, "" 0.2: "a" wins. Scored by its best single ending, "a" had 0.175
    against "ab"'s 0.315, and lost."""
    lm = CharLM.create("ab .", hidden_size=2, seed=0)
    table = {"": {"a": 0.7, "b": 0.1, " ": 0.1, ".": 0.1},
             "a": {"b": 0.5, " ": 0.25, ".": 0.25},
             "b": {" ": 0.5, ".": 0.5},
             "ab": {" ": 0.9, ".": 0.05, "a": 0.05}}
    fake = TableModel(lm.vocab, table)
    monkeypatch.setattr(lm, "model", fake)
    state = ((np.zeros((1, 1, 1)),),)   # one layer's h: what complete() passes on
    monkeypatch.setattr(lm, "_read_after",
                        lambda contexts, prefix: (np.zeros(1), fake.logp("")[None], state))
    assert lm.complete("x") == "a"
    table["a"] = {"b": 0.9, " ": 0.05, ".": 0.05}   # now "ab" (0.7*0.9*0.95) wins
    assert lm.complete("x") == "ab"


def test_the_held_out_end_of_the_text_is_never_trained_on():
    """'z' comes only in the last tenth of the text: held out, its embedding gets
    no gradient and stays as it was; trained on, it moves."""
    text = "name " * 200 + "zen " * 5 + "name " * 10
    moved = []
    for split in (0.1, 0.0):
        lm = CharLM.create(text, hidden_size=8, embed_size=4, seed=0)
        z = lm.vocab.encode("z")[0]
        before = lm.model.params["0.W"][z].copy()
        h = lm.fit(text, epochs=2, batch_size=4, seq_len=20, validation_split=split,
                   progress=False)
        moved.append(not np.array_equal(lm.model.params["0.W"][z], before))
        assert (h.val_loss[-1] is not None) == (split > 0)
    assert moved == [False, True]


def test_validation_text_and_bad_splits(name_model):
    h = name_model.fit("name " * 40, epochs=1, batch_size=4, seq_len=20,
                       validation="name name name ", progress=False)
    assert h.val_loss[-1] < 1.0
    for kwargs, match in [(dict(validation="name", validation_split=0.1), "not both"),
                          (dict(validation_split=1.0), r"\[0, 1\)"),
                          (dict(validation_split=True), r"\[0, 1\)"),
                          (dict(validation_split=0.001), "at least 2")]:
        with pytest.raises(ValueError, match=match):
            name_model.fit("name " * 40, epochs=1, **kwargs)
