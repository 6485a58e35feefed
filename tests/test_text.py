"""The character model: vocabulary, learning the seed example, completion."""
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
