"""scikit-learn estimators of sequences: SequenceClassifier (one label a
sequence) and SequenceRegressor (one value, or k, a sequence), on Model.for_classes
and Model.for_regression.

X is (N, T, F) numbers, (N, T) (N univariate sequences of T steps), or a list of N
sequences of their own lengths, each (T_i, F) or (T_i,): those are padded with
zeros to the longest (data.pad_sequences) and trained and predicted with their
lengths, so that padding changes nothing. The estimators follow scikit-learn's
contract (parameters kept as given in __init__, fitted attributes ending in _,
clone, pickling, Pipeline, GridSearchCV); needs scikit-learn (fastlstm[sklearn]).
"""
try:
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
    from sklearn.model_selection import train_test_split
    from sklearn.utils import check_random_state
    from sklearn.utils.multiclass import check_classification_targets
    from sklearn.utils.validation import check_array, check_is_fitted, column_or_1d, \
        validate_data
except ImportError as exc:   # pragma: no cover - the message is the point
    raise ImportError("fastlstm.sklearn needs scikit-learn: pip install "
                      "'fastlstm[sklearn]'") from exc
import numpy as np
import scipy.sparse

from .callbacks import EarlyStopping
from .data import pad_sequences
from .model import Model
from .optim import OPTIMIZERS
from .train import train

__all__ = ["SequenceClassifier", "SequenceRegressor"]


class _SequenceEstimator(BaseEstimator):
    """What the classifier and the regressor share: the parameters, reading X,
    training, predicting.

    cell: "lstm", "gru" or "rnn"; hidden_size, num_layers, bidirectional, dropout:
    the recurrent stack. epochs, batch_size, lr, optimizer ("adam", "sgd"),
    weight_decay (decoupled), clip_norm (global L2 norm; None: never): training.
    early_stopping: hold out validation_fraction of the rows (stratified for the
    classifier), stop once the validation loss has not fallen for n_iter_no_change
    epochs, and keep the best epoch's weights. dtype: "float32" or "float64".
    backend: the kernels (fastlstm.backends). precision: None, or "bf16" (float32)
    for mixed precision (fastlstm.train). random_state: None, an int or a
    RandomState, for the weights, the shuffling and the split. progress: as
    fastlstm.train takes it (False: nothing).
    """

    def __init__(self, *, cell="lstm", hidden_size=64, num_layers=1, bidirectional=False,
                 dropout=0.0, epochs=30, batch_size=32, lr=0.01, optimizer="adam",
                 weight_decay=0.0, clip_norm=5.0, early_stopping=False,
                 validation_fraction=0.1, n_iter_no_change=5, dtype="float32",
                 backend="auto", precision=None, random_state=None, progress=False):
        self.cell = cell
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bidirectional = bidirectional
        self.dropout = dropout
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.optimizer = optimizer
        self.weight_decay = weight_decay
        self.clip_norm = clip_norm
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.dtype = dtype
        self.backend = backend
        self.precision = precision
        self.random_state = random_state
        self.progress = progress

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        return tags

    # -- X ---------------------------------------------------------------------

    def _sequences(self, X, fit):
        """(X (N, T, F) in dtype, lengths (N,) or None) from what a user passes.

        A 2-D X (nested lists of one length too) is checked as scikit-learn checks
        a table: its columns (the steps) are n_features_in_, the same at predict.
        For a 3-D X or a list of sequences of their own lengths, n_features_in_ is
        the features of a step, and T may change."""
        dtype = np.dtype(self.dtype)
        if dtype not in (np.float32, np.float64):
            raise ValueError(f"dtype: expected 'float32' or 'float64', got {self.dtype!r}")
        lengths, table = None, False
        if _ragged(X):
            X, lengths = pad_sequences(X, dtype=dtype)
        else:
            if not (scipy.sparse.issparse(X) or _is_table(X)):
                X = np.asarray(X)
            if X.ndim == 3:
                X = check_array(X, dtype=dtype, allow_nd=True)
            elif X.ndim == 2 and not fit and not self._fit_on_table:
                X, table = check_array(X, dtype=dtype)[:, :, None], True
            else:   # scikit-learn's checks and messages, for a 1-D X too
                X, table = validate_data(self, X, reset=fit, dtype=dtype)[:, :, None], True
        if fit:
            self._fit_on_table = table
            if not table:
                self.n_features_in_ = X.shape[2]
        elif X.shape[2] != self.model_.n_features:
            raise ValueError(f"X has {X.shape[2]} features a step, but "
                             f"{type(self).__name__} is expecting {self.model_.n_features}")
        if not np.isfinite(X).all():
            raise ValueError("X: contains NaN or inf")
        return X, lengths

    # -- training --------------------------------------------------------------

    def _fit(self, X, targets, lengths, stratify):
        """Build the model and train it on X (N, T, F), targets and lengths."""
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer: expected one of {sorted(OPTIMIZERS)}, got "
                             f"{self.optimizer!r}")
        rng = check_random_state(self.random_state)
        seed = int(rng.randint(2 ** 31 - 1))
        model = self._model(X.shape[2], seed)
        validation, callbacks = None, None
        if self.early_stopping:
            rows = np.arange(len(X))
            fit_rows, val_rows = train_test_split(rows, test_size=self.validation_fraction,
                                                  random_state=rng, stratify=stratify)
            validation = (X[val_rows], targets[val_rows], None,
                          None if lengths is None else lengths[val_rows])
            X, targets = X[fit_rows], targets[fit_rows]
            lengths = None if lengths is None else lengths[fit_rows]
            callbacks = [EarlyStopping(patience=self.n_iter_no_change)]
        opt = OPTIMIZERS[self.optimizer](lr=self.lr, weight_decay=self.weight_decay,
                                         backend=model.backend)
        self.history_ = train(model, X, targets, epochs=self.epochs,
                              batch_size=self.batch_size, optimizer=opt,
                              clip_norm=self.clip_norm, seed=seed, validation=validation,
                              callbacks=callbacks, lengths=lengths,
                              progress=self.progress, restore_best=bool(self.early_stopping),
                              precision=self.precision)
        self.model_ = model
        return self

    def _model_kwargs(self, seed):
        return dict(cell=self.cell, hidden_size=self.hidden_size, num_layers=self.num_layers,
                    bidirectional=self.bidirectional, dropout=self.dropout, seed=seed,
                    dtype=self.dtype, backend=self.backend)

    def _outputs(self, X):
        """The model's outputs (N, k) for X."""
        check_is_fitted(self, "model_")
        X, lengths = self._sequences(X, fit=False)
        return self.model_.predict(X, lengths=lengths)


class SequenceClassifier(ClassifierMixin, _SequenceEstimator):
    __doc__ = ("One label a sequence: a recurrent stack, its last step, a Dense to the "
               "classes, cross-entropy. Labels may be anything sortable (strings "
               "too); classes_ holds them sorted.\n\n    " + _SequenceEstimator.__doc__)

    def fit(self, X, y):
        """Train on X (see the module) and y (N,) labels; returns self."""
        _require(y)
        X, lengths = self._sequences(X, fit=True)
        y = column_or_1d(y, warn=True)
        check_classification_targets(y)
        if len(y) != len(X):
            raise ValueError(f"y: expected {len(X)} labels, one a row of X, got {len(y)}")
        self.classes_, labels = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError(f"y: expected at least 2 classes, got 1 class "
                             f"({self.classes_[0]!r})")
        return self._fit(X, labels.astype(np.int64), lengths, stratify=labels)

    def _model(self, n_features, seed):
        return Model.for_classes(n_features, len(self.classes_), **self._model_kwargs(seed))

    def predict_proba(self, X):
        """(N, n_classes) probabilities, the columns in classes_' order."""
        logits = self._outputs(X).astype(np.float64)
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        return p / p.sum(axis=1, keepdims=True)

    def predict_log_proba(self, X):
        return np.log(self.predict_proba(X))

    def predict(self, X):
        """(N,) the most probable label of each sequence."""
        best = np.argmax(self._outputs(X), axis=1)
        return self.classes_[best]


class SequenceRegressor(RegressorMixin, _SequenceEstimator):
    __doc__ = ("One value (or k) a sequence: a recurrent stack, its last step, a Dense "
               "to the values, MSE (Model.for_regression). y (N,) gives predictions "
               "(N,), y (N, k) gives (N, k).\n\n    " + _SequenceEstimator.__doc__)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

    def fit(self, X, y):
        """Train on X (see the module) and y (N,) or (N, k) numbers; returns self."""
        _require(y)
        X, lengths = self._sequences(X, fit=True)
        y = check_array(y, ensure_2d=False, dtype=np.dtype(self.dtype))
        if y.ndim not in (1, 2) or len(y) != len(X):
            raise ValueError(f"y: expected (N,) or (N, k) with N = {len(X)}, got {y.shape}")
        self._one_output = y.ndim == 1
        Y = y[:, None] if y.ndim == 1 else y
        self.n_outputs_ = Y.shape[1]
        return self._fit(X, Y, lengths, stratify=None)

    def _model(self, n_features, seed):
        return Model.for_regression(n_features, self.n_outputs_, **self._model_kwargs(seed))

    def predict(self, X):
        """(N,) values, or (N, k) for a model fitted on y (N, k)."""
        out = self._outputs(X).astype(np.float64)
        return out[:, 0] if self._one_output else out


def _require(y):
    if y is None:   # scikit-learn's words, which its checks look for
        raise ValueError("this estimator requires y to be passed, but the target y is None")


def _ragged(X):
    """A list of sequences of more than one length (equal ones make an array)."""
    return isinstance(X, (list, tuple)) and all(np.ndim(x) in (1, 2) for x in X) \
        and len({len(x) for x in X}) > 1


def _is_table(X):
    """A pandas DataFrame or the like: 2-D with columns."""
    return hasattr(X, "columns") and hasattr(X, "shape") and len(X.shape) == 2
