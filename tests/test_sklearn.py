"""fastlstm.sklearn: scikit-learn's own estimator checks, the ecosystem (clone,
pickle, Pipeline, GridSearchCV, cross_val_score), and each estimator against the
same model trained by hand with fastlstm.train."""
import pickle

import numpy as np
import pytest

pytest.importorskip("sklearn")

from sklearn.base import clone  # noqa: E402
from sklearn.model_selection import GridSearchCV, cross_val_score  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

import fastlstm  # noqa: E402
from fastlstm.data import pad_sequences, speaker_recordings  # noqa: E402
from fastlstm.sklearn import SequenceClassifier, SequenceRegressor  # noqa: E402


@parametrize_with_checks([SequenceClassifier(), SequenceRegressor()])
def test_scikit_learn_checks(estimator, check):
    """Every check of check_estimator, on 2-D X read as univariate sequences; none
    is expected to fail."""
    check(estimator)


def _seed(random_state):
    """The seed the estimators give fastlstm.train for random_state."""
    return int(np.random.RandomState(random_state).randint(2 ** 31 - 1))


@pytest.fixture(scope="module")
def vowels():
    return speaker_recordings(n_per_speaker=24, seed=0), \
        speaker_recordings(n_per_speaker=10, seed=1)


def test_the_classifier_is_fastlstm_train_on_the_padded_sequences(vowels):
    (X, y), (Xt, yt) = vowels
    est = SequenceClassifier(hidden_size=16, epochs=8, random_state=3).fit(X, y)
    classes = np.unique(y)
    padded, lengths = pad_sequences(X)
    model = fastlstm.Model.for_classes(12, len(classes), hidden_size=16, seed=_seed(3))
    opt = fastlstm.Adam(lr=0.01)
    fastlstm.train(model, padded, np.searchsorted(classes, y), epochs=8, batch_size=32,
                   optimizer=opt, seed=_seed(3), lengths=lengths, progress=False)
    Pt, lt = pad_sequences(Xt)
    logits = model.predict(Pt, lengths=lt)
    np.testing.assert_array_equal(est.predict(Xt), classes[logits.argmax(axis=1)])
    p = est.predict_proba(Xt)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_array_equal(est.classes_, classes)
    assert est.n_features_in_ == 12 and est.history_.epoch == list(range(1, 9))


def test_grid_search_reaches_the_hand_trained_models_accuracy(vowels):
    """GridSearchCV over hidden_size on recordings of their own lengths; its best
    estimator, refit on all the training rows, scores on held-out recordings what
    the same model trained by hand scores, and well above chance (1/9)."""
    (X, y), (Xt, yt) = vowels
    grid = GridSearchCV(SequenceClassifier(epochs=25, random_state=0),
                        {"hidden_size": [8, 32]}, cv=3).fit(X, y)
    h = grid.best_params_["hidden_size"]
    classes = np.unique(y)
    padded, lengths = pad_sequences(X)
    model = fastlstm.Model.for_classes(12, 9, hidden_size=h, seed=_seed(0))
    fastlstm.train(model, padded, np.searchsorted(classes, y), epochs=25,
                   optimizer=fastlstm.Adam(lr=0.01), seed=_seed(0), lengths=lengths,
                   progress=False)
    Pt, lt = pad_sequences(Xt)
    by_hand = np.mean(classes[model.predict(Pt, lengths=lt).argmax(axis=1)] == yt)
    assert grid.score(Xt, yt) == pytest.approx(by_hand)
    assert by_hand > 0.6


def test_padding_changes_nothing(vowels):
    (X, y), _ = vowels
    est = SequenceClassifier(hidden_size=8, epochs=2, random_state=0, dtype="float64")
    est.fit(X, y)
    together = est.predict_proba(X[:6])
    alone = np.concatenate([est.predict_proba([x]) for x in X[:6]])
    np.testing.assert_allclose(together, alone, rtol=1e-10, atol=1e-12)


def test_clone_pickle_and_params(vowels, tmp_path):
    (X, y), (Xt, _) = vowels
    est = SequenceClassifier(cell="gru", hidden_size=8, num_layers=2, bidirectional=True,
                             epochs=2, random_state=1)
    assert clone(est).get_params() == est.get_params()
    est.set_params(hidden_size=6)
    assert est.hidden_size == 6
    est.fit(X, y)
    again = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(again.predict_proba(Xt), est.predict_proba(Xt))
    fastlstm.save(est.model_, tmp_path / "m.npz")
    Pt, lt = pad_sequences(Xt)
    np.testing.assert_array_equal(fastlstm.load(tmp_path / "m.npz").predict(Pt, lengths=lt),
                                  est.model_.predict(Pt, lengths=lt))


def test_pipeline_and_cross_val_score_on_a_table():
    """2-D X: N univariate sequences of T steps, scaled step by step in a Pipeline."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 10)).cumsum(axis=1) * 50
    y = np.where(X[:, -1] > X[:, 0], "up", "down")
    pipe = make_pipeline(StandardScaler(), SequenceClassifier(hidden_size=8, epochs=15,
                                                              random_state=0))
    scores = cross_val_score(pipe, X, y, cv=3)
    assert scores.mean() > 0.8


def test_regressor_one_and_several_outputs():
    rng = np.random.default_rng(0)
    X = [rng.normal(size=(int(T), 2)) for T in rng.integers(3, 12, 150)]
    y = np.array([x[:, 0].sum() for x in X])
    Y = np.stack([y, np.array([x[-1, 1] for x in X])], axis=1)
    one = SequenceRegressor(hidden_size=16, epochs=40, random_state=0).fit(X, y)
    assert one.predict(X).shape == (150,) and one.predict(X).dtype == np.float64
    assert one.score(X, y) > 0.8
    two = SequenceRegressor(hidden_size=16, epochs=40, random_state=0).fit(X, Y)
    assert two.predict(X).shape == (150, 2) and two.n_outputs_ == 2
    assert two.score(X, Y) > 0.8


def test_early_stopping_keeps_the_best_epoch(vowels):
    (X, y), _ = vowels
    est = SequenceClassifier(hidden_size=8, epochs=40, lr=0.05, early_stopping=True,
                             n_iter_no_change=3, random_state=0).fit(X, y)
    h = est.history_
    assert h.val_loss[0] is not None and len(h.epoch) < 40
    best = int(np.argmin(h.val_loss))
    assert h.best_epoch[-1] == h.epoch[best]


def test_bad_input_is_a_clear_error(vowels):
    (X, y), _ = vowels
    with pytest.raises(ValueError, match="at least 2 classes"):
        SequenceClassifier(epochs=1).fit(X, ["a"] * len(X))
    with pytest.raises(ValueError, match=r"sequences\[1\]: expected \(T_i, 12\)"):
        SequenceClassifier(epochs=1).fit([X[0], X[1][:, :3]], y[:2])
    est = SequenceClassifier(epochs=1, hidden_size=4).fit(X, y)
    with pytest.raises(ValueError, match="X has 3 features a step, but SequenceClassifier "
                                         "is expecting 12"):
        est.predict([x[:, :3] for x in X[:3]])
    with pytest.raises(ValueError, match="optimizer"):
        SequenceClassifier(optimizer="lbfgs").fit(X, y)


def test_without_scikit_learn_the_import_says_what_to_install(python):
    r = python("""
        import sys
        sys.modules["sklearn"] = None
        import fastlstm
        try:
            import fastlstm.sklearn
        except ImportError as exc:
            print(exc)
    """)
    assert "pip install 'fastlstm[sklearn]'" in r.stdout, r.stderr
