"""fastlstm.train: minibatch training with truncated BPTT, clipping, validation,
a progress bar, checkpoints and resuming."""
import dataclasses
import math
import os
import sys
import time

import numpy as np
from tqdm.auto import tqdm

from ._rows import by_length
from ._threads import chosen, get_num_threads, single_threaded_blas, threads
from .callbacks import BestEpoch
from .distributed import communicator, local_threads
from .io import load_checkpoint, save
from .model import Model, row_lengths, to_time_major
from .ops import all_finite
from .optim import OPTIMIZERS, clip_grads, make_optimizer

__all__ = ["train", "History", "StepInfo", "TrainingDiverged"]


class TrainingDiverged(FloatingPointError):
    """The loss or the gradient became NaN or inf."""


@dataclasses.dataclass
class StepInfo:
    """What a callback's on_step sees after each update (or skipped update)."""
    epoch: int
    step: int          # counted from 0 over the whole training
    loss: float
    grad_norm: float   # global L2 norm before clipping
    tokens: int        # steps of the batch the loss counted


@dataclasses.dataclass
class History:
    """Per-epoch figures: mean training loss (over the tokens of the epoch, taken
    as training went), validation loss, perplexities (token models), accuracies
    (models of one label per row: the fraction of rows classified right, taken as
    training went), wall time (s), training speed (tokens/s, a token being one
    time step of one row) and, where training keeps its best epoch (train's
    restore_best), the best epoch so far: the one whose weights the model keeps."""
    epoch: list = dataclasses.field(default_factory=list)
    loss: list = dataclasses.field(default_factory=list)
    val_loss: list = dataclasses.field(default_factory=list)
    perplexity: list = dataclasses.field(default_factory=list)
    val_perplexity: list = dataclasses.field(default_factory=list)
    accuracy: list = dataclasses.field(default_factory=list)
    val_accuracy: list = dataclasses.field(default_factory=list)
    wall_time: list = dataclasses.field(default_factory=list)
    tokens_per_s: list = dataclasses.field(default_factory=list)
    best_epoch: list = dataclasses.field(default_factory=list)

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d):
        """The History of to_dict; a figure an older one lacks is None each epoch."""
        n = len(d.get("epoch", []))
        return cls(**{f.name: list(d.get(f.name, [None] * n)) for f in dataclasses.fields(cls)})

    def summary(self, rows=6):
        """A few lines of the loss curve: first, last and evenly spaced epochs, and
        the best one where training kept it."""
        n = len(self.epoch)
        if n == 0:
            return "no epochs"
        picks = {round(k * (n - 1) / max(rows - 1, 1)) for k in range(rows)}
        best = self.best_epoch[-1] if self.best_epoch else None
        if best is not None:
            picks.add(self.epoch.index(best))
        return "\n".join(self.line(k) + ("  best" if self.epoch[k] == best else "")
                         for k in sorted(picks))

    def line(self, k):
        """Epoch k's figures (k indexes the lists) on one line."""
        line = f"epoch {self.epoch[k]:4d}  loss {self.loss[k]:.4f}"
        if self.perplexity and self.perplexity[k] is not None:
            line += f"  ppl {self.perplexity[k]:.2f}"
        if self.val_loss and self.val_loss[k] is not None:
            line += f"  val {self.val_loss[k]:.4f}"
        if self.val_perplexity and self.val_perplexity[k] is not None:
            line += f"  val ppl {self.val_perplexity[k]:.2f}"
        if self.accuracy and self.accuracy[k] is not None:
            line += f"  acc {self.accuracy[k]:.3f}"
        if self.val_accuracy and self.val_accuracy[k] is not None:
            line += f"  val acc {self.val_accuracy[k]:.3f}"
        return line + f"  {self.tokens_per_s[k]:,.0f} tok/s"


def train(model, X, Y, *, epochs=10, batch_size=32, seq_len=None, optimizer="adam",
          lr=None, clip_norm=5.0, seed=0, validation=None, progress="auto", callbacks=None,
          checkpoint=None, resume=False, mask=None, lengths=None, on_nan="raise",
          distributed=None, restore_best=False, precision=None):
    """Train model on X -> Y and return its History.

    model: a Model, or an object that wraps one (a CharLM): that is what a
    checkpoint holds. X: tokens (N, T) int for a token model, else features (N, T, F); Y: targets
    (N, T) int for cross-entropy, (N, T, O) for MSE, (N,) int labels for a model of
    one label per row (Model.for_classes), (N, O) values ((N,) for O = 1) for a
    model of one value per row (Model.for_regression); mask: (N, T) bool, steps
    the loss counts (default all); lengths: (N,) int, the steps of each row
    (default all T): the loss counts only steps before a row's end, and a model of
    one output per row reads each row's last step. Each epoch shuffles the rows
    (by seed and epoch) into batches of batch_size. seq_len cuts each batch into windows of seq_len
    steps, trained one after another with the hidden state carried from one window
    to the next and the gradient stopped between them (truncated BPTT); None trains
    each batch whole (a model that must see rows whole, bidirectional or of one
    label per row, takes no seq_len). Dropout in the model's layers draws from seed
    and the epoch.

    progress: "auto" shows a bar on a terminal and one line per epoch otherwise (a
    log file), on stderr; "bar", "lines", or False for nothing (True: "bar").
    optimizer: "adam" (lr 1e-3), "sgd" (lr 0.1, momentum 0.9) or an Optimizer.
    clip_norm: clip the gradients to this global L2 norm (None: never).
    validation: (X, Y), (X, Y, mask) or (X, Y, mask, lengths), evaluated after
    each epoch.
    mask: every row must keep a step (a row that keeps none trains nothing), and a
    validation mask at least one; a window that keeps no step makes no update.
    callbacks: objects with any of on_train_begin(model, optimizer, history),
    on_step(StepInfo), on_epoch_end(epoch, history) (True stops training) and
    on_train_end(history): fastlstm.callbacks has learning-rate schedules and
    early stopping.
    checkpoint: a path saved (atomically) after every epoch, with the optimizer
    state; resume=True continues from it when it exists, to `epochs` in total.
    restore_best: keep the epoch of the lowest validation loss (training loss
    without validation): the model ends with its weights, the checkpoint holds
    them as its model (and the last epoch's weights, which resuming goes on from),
    and History.best_epoch says which it is.
    on_nan: "raise" stops with TrainingDiverged at a NaN/inf loss or gradient,
    "skip" leaves that update out and goes on.
    distributed: None (one process) or "mpi": every rank of `mpiexec -n P` calls
    train with the same arguments and data; batch_size is the global batch, each
    rank computes the gradients of its part of it, one Allreduce a step sums them
    (weighted by the steps each part kept) so that every rank makes the same
    update and holds the same weights. The weights start as rank 0's; rank 0 alone
    shows progress and writes checkpoints; validation is split over the ranks.
    Each rank takes the machine's cores / its ranks there as threads unless a
    count was set. An exception on a rank ends the whole job
    (fastlstm.distributed).
    precision: "bf16" trains a float32 model in mixed precision (fastlstm.ops):
    the recurrent layers' products on bf16 operands, the weights, gradients,
    optimizer and loss in fp32; the model keeps it (model.precision) for predict
    and the stepper. None keeps the model's precision.
    """
    to_save = model
    model = model if isinstance(model, Model) else getattr(model, "model", None)
    if not isinstance(model, Model):
        raise TypeError(f"model: expected a fastlstm Model (or a CharLM), got "
                        f"{type(to_save).__name__}")
    _positive("epochs", epochs)
    _positive("batch_size", batch_size)
    if seq_len is not None:
        _positive("seq_len", seq_len)
        if model.whole_sequences:
            raise ValueError("seq_len: this model reads each row whole (it is bidirectional "
                             "or gives one output per row); leave seq_len None")
    if on_nan not in ("raise", "skip"):
        raise ValueError(f"on_nan: expected 'raise' or 'skip', got {on_nan!r}")
    if not (isinstance(progress, bool) or progress in PROGRESS):
        raise ValueError(f"progress: expected one of {PROGRESS} or a bool, got "
                         f"{progress!r}")
    if not isinstance(restore_best, (bool, np.bool_)):
        raise TypeError(f"restore_best: expected True or False, got {restore_best!r}")
    if precision is not None:
        model.precision = precision
    data = _prepare(model, X, Y, mask, lengths, "X")
    if data[2] is not None and not data[2].any(axis=0).all():
        empty = np.flatnonzero(~data[2].any(axis=0))
        raise ValueError(f"mask: {len(empty)} rows keep no step (rows "
                         f"{', '.join(map(str, empty[:5]))}{', ...' if len(empty) > 5 else ''}"
                         "): they would train nothing; leave them out")
    val = None
    if validation is not None:
        if not isinstance(validation, (tuple, list)) or len(validation) not in (2, 3, 4):
            raise TypeError("validation: expected (X, Y), (X, Y, mask) or "
                            "(X, Y, mask, lengths)")
        vx, vy, vmask, vlengths = tuple(validation) + (None,) * (4 - len(validation))
        val = _prepare(model, vx, vy, vmask, vlengths, "validation X")
        if val[2] is not None and not val[2].any():
            raise ValueError("validation mask: keeps no step, so there is no loss to "
                             "measure")
    opt = make_optimizer(optimizer, lr, backend=model.backend)
    comm = communicator(distributed)
    if comm.size == 1:
        return _train(comm, to_save, model, opt, data, val, epochs, batch_size, seq_len,
                      clip_norm, seed, progress, callbacks, checkpoint, resume, on_nan,
                      restore_best)
    try:
        with threads(get_threads(comm)):
            return _train(comm, to_save, model, opt, data, val, epochs, batch_size, seq_len,
                          clip_norm, seed, progress, callbacks, checkpoint, resume, on_nan,
                          restore_best)
    except BaseException:
        comm.abort()


def get_threads(comm):
    """The kernels' threads on this rank: the count set, else the machine's cores
    divided by the ranks on it."""
    return get_num_threads() if chosen() else local_threads(comm)


def _train(comm, to_save, model, opt, data, val, epochs, batch_size, seq_len, clip_norm,
           seed, progress, callbacks, checkpoint, resume, on_nan, restore_best):
    """train's loop, its arguments checked (comm: fastlstm.distributed)."""
    comm.same("X and Y shapes", (data[0].shape, data[1].shape))
    callbacks = list(callbacks or [])
    history, start = History(), 0
    best = BestEpoch() if restore_best else None
    if resume and checkpoint is not None and comm.bcast(os.path.exists(checkpoint)):
        saved = {k: np.empty_like(p) for k, p in model.params.items()}
        if comm.root:
            history, start = _resume(to_save, model, opt, checkpoint, saved)
        history, start, opt.state = comm.bcast((history, start, opt.state))
        if best is not None:
            comm.bcast_arrays(saved.values())
            best.resume(history, saved)
    comm.bcast_arrays(model.params.values())

    N, T = data[0].shape[1], data[0].shape[0]
    S = T if seq_len is None else min(seq_len, T)
    steps_per_epoch = math.ceil(N / batch_size) * math.ceil(T / S)
    shown = _progress_shown(progress) if comm.root else None
    bar = tqdm(total=epochs * steps_per_epoch, initial=start * steps_per_epoch,
               disable=shown != "bar", unit="step", dynamic_ncols=True)
    run = _Run(model, opt, clip_norm, on_nan, callbacks, bar, checkpoint, comm,
               step=start * steps_per_epoch)
    for cb in callbacks:
        if hasattr(cb, "on_train_begin"):
            cb.on_train_begin(model, opt, history)
    # Overflow shows as a NaN/inf loss or gradient norm, which the guard reports.
    # Every heavy part of a step runs on the kernels' threads; BLAS stays on one
    # thread throughout, so that no pool of its own spins beside them.
    with bar, np.errstate(over="ignore", invalid="ignore"), single_threaded_blas():
        for epoch in range(start + 1, epochs + 1):
            order = np.random.default_rng([seed, epoch - 1]).permutation(N)
            dropout = np.random.default_rng([seed, epoch - 1, 1]
                                            + ([comm.rank] if comm.size > 1 else []))
            t_start = time.perf_counter()
            loss, tokens, hits = run.epoch(epoch, epochs, _windows(
                data, order, batch_size, S, model, train=True, rng=dropout, comm=comm))
            wall = time.perf_counter() - t_start
            _record(history, model, epoch, loss, tokens, hits, wall, val, batch_size, S, comm)
            if val is not None:
                run.last_val = f", last val {history.val_loss[-1]:.4f}"
            if best is not None:
                best.see(epoch, history, model.params)
                history.best_epoch[-1] = best.epoch
            if shown == "lines":
                print(f"{history.line(-1)}  {wall:.1f} s  ({epoch}/{epochs})",
                      file=sys.stderr, flush=True)
            if checkpoint is not None and comm.root:
                save(to_save, checkpoint, _train_state(opt, history, epoch, seed, best))
            # every callback sees the epoch, whichever asks to stop
            if any([cb.on_epoch_end(epoch, history) for cb in callbacks
                    if hasattr(cb, "on_epoch_end")]):
                break
    ends = [cb for cb in callbacks if hasattr(cb, "on_train_end")]
    for cb in ends:
        cb.on_train_end(history)
    if ends and checkpoint is not None and history.epoch and comm.root:
        # what they did to the model (early stopping's best weights) is kept too
        save(to_save, checkpoint, _train_state(opt, history, history.epoch[-1], seed, best))
    if best is not None:
        best.restore(model.params)
    return history


PROGRESS = ("auto", "bar", "lines")


def _progress_shown(progress):
    """"bar", "lines" or None for train's progress argument."""
    if progress == "auto":
        return "bar" if sys.stderr.isatty() else "lines"
    if progress is True:
        return "bar"
    return progress or None


@dataclasses.dataclass
class _Run:
    """One training run's moving parts; epoch() does the updates of one epoch."""
    model: Model
    opt: object
    clip_norm: object
    on_nan: str
    callbacks: list
    bar: object
    checkpoint: object
    comm: object
    step: int
    last_val: str = ""   # the last epoch's validation loss, shown beside the progress

    def epoch(self, epoch, epochs, windows):
        """Update on each (loss, kept steps, hits) of windows; returns the epoch's mean
        loss (NaN if every step was skipped), the steps counted and the rows
        classified right (None but for one label per row)."""
        total, count, right = 0.0, 0, None
        t_start = time.perf_counter()
        for loss, n_kept, hits in windows:
            # the global batch's figures, and its gradient in the model's grads
            loss, n_kept, hits = self.comm.reduce_step(self.model.grads, loss, n_kept, hits)
            if n_kept == 0:
                # nothing to learn from; the state still went through the window
                self.step += 1
                self.bar.update(1)
                continue
            grad_norm = clip_grads(self.model.grads, self.clip_norm,
                                   backend=self.model.backend)
            if math.isfinite(loss) and math.isfinite(grad_norm):
                self.opt.step(self.model.params, self.model.grads)
                total += loss * n_kept
                count += n_kept
                if hits is not None:
                    right = (right or 0) + hits
            elif self.on_nan == "raise":
                raise TrainingDiverged(
                    f"training diverged at epoch {epoch}, step {self.step + 1}: loss {loss}, "
                    f"gradient norm {grad_norm}. Try clip_norm (e.g. 1.0) or a lower lr; "
                    "the weights are those before this step"
                    + (f", and {self.checkpoint} holds the last finished epoch"
                       if self.checkpoint is not None else ""))
            for cb in self.callbacks:
                if hasattr(cb, "on_step"):
                    cb.on_step(StepInfo(epoch, self.step, loss, grad_norm, n_kept))
            self.step += 1
            self.bar.update(1)
            speed = count / max(time.perf_counter() - t_start, 1e-9)
            self.bar.set_postfix_str(f"epoch {epoch}/{epochs} loss "
                                     f"{total / max(count, 1):.4f} {speed:,.0f} tok/s"
                                     + self.last_val, refresh=False)
        return (total / count if count else math.nan), count, right


def _positive(name, n):
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"{name}: expected an int >= 1, got {n!r}")


def _prepare(model, X, Y, mask, lengths, what):
    """Time-major copies of X, Y (and mask) in the dtypes the model wants, and the
    checked lengths (None: every row all T steps). Labels of one per row come out
    as a (1, N) step."""
    X, Y = np.asarray(X), np.asarray(Y)
    if model.takes_tokens:
        if X.ndim != 2 or not np.issubdtype(X.dtype, np.integer):
            raise TypeError(f"{what}: expected int tokens of shape (N, T), got "
                            f"{X.dtype} {X.shape}")
    else:
        X = model.features(X, what)
    if model.per_sequence:
        if mask is not None:
            raise ValueError("mask: a model of one output per row takes lengths=, not a "
                             "mask")
        if model.classifies:
            if Y.ndim != 1 or not np.issubdtype(Y.dtype, np.integer) \
                    or Y.shape[0] != X.shape[0]:
                raise TypeError(f"Y: expected one int label per row, shape (N,) = "
                                f"({X.shape[0]},), got {Y.dtype} {Y.shape}")
        else:
            k = model.n_outputs
            if Y.ndim == 1 and k == 1:
                Y = Y[:, None]
            if Y.shape != (X.shape[0], k) or Y.dtype.kind not in "biuf":
                raise ValueError(f"Y: expected {k} value{'s' if k > 1 else ''} per row, "
                                 f"shape (N, {k}) = ({X.shape[0]}, {k})"
                                 + (f" or (N,) = ({X.shape[0]},)" if k == 1 else "")
                                 + f", got {Y.dtype} {Y.shape}")
        Y = Y[:, None]
    elif Y.shape[:2] != X.shape[:2]:
        raise ValueError(f"Y: expected (N, T) = {X.shape[:2]} leading like X, got {Y.shape}")
    if model.loss_name == "xent":
        if Y.ndim != 2 or not np.issubdtype(Y.dtype, np.integer):
            raise TypeError(f"Y: expected int targets of shape (N, T), got {Y.dtype} {Y.shape}")
    else:
        if Y.ndim == 2 and model.n_outputs == 1:
            Y = Y[..., None]
        if Y.ndim != 3:
            raise ValueError(f"Y: expected targets of shape (N, T, O), got {Y.shape}")
        Y = Y.astype(model.dtype, copy=False)
    for name, a in ((what, X), ("Y", Y)):
        if a.dtype.kind == "f" and not all_finite(a):
            raise ValueError(f"{name}: contains NaN or inf")
    if min(X.shape[:2]) < 1:
        raise ValueError(f"{what}: expected N >= 1 rows of T >= 1 steps, got {X.shape}")
    if mask is not None:
        mask = np.asarray(mask)
        if mask.shape != X.shape[:2]:
            raise ValueError(f"mask: expected shape (N, T) = {X.shape[:2]}, got {mask.shape}")
        mask = to_time_major(mask.astype(bool))
    lengths = row_lengths(lengths, *X.shape[:2])
    return to_time_major(X), to_time_major(Y), mask, lengths


def _windows(data, order, batch_size, S, model, train, rng=None, comm=None):
    """For each batch of rows, each window of S steps in order, with the state
    carried: yields (loss, kept steps, hits) after a training step (train) or an
    evaluation. A batch's rows go longest first, as the kernels take them. With
    comm, this rank's part of each batch only (nothing kept where it has none)."""
    X, Y, mask, lengths = data
    T = X.shape[0]
    for b0 in range(0, len(order), batch_size):
        rows = order[b0:b0 + batch_size]
        if comm is not None:
            rows = comm.share(rows)
        if len(rows) == 0:
            for _ in range(0, T, S):
                yield 0.0, 0, 0 if model.classifies else None
            continue
        if lengths is not None:
            order_here, _ = by_length(lengths[rows])
            rows = rows if order_here is None else rows[order_here]
        xb, yb = X[:, rows], Y[:, rows]
        mb = None if mask is None else mask[:, rows]
        state = None
        for t0 in range(0, T, S):
            lw = None if lengths is None else np.clip(lengths[rows] - t0, 0, S)
            yw = yb[t0:t0 + S]
            m = model._mask(None if mb is None else mb[t0:t0 + S], lw, yw.shape[0])
            kept = yw.shape[0] * yw.shape[1] if m is None else int(np.count_nonzero(m))
            # a window that keeps no step only carries the state on
            loss, state, hits = model.step(xb[t0:t0 + S], yw, m, state, lengths=lw, rng=rng,
                                           train=bool(train and kept))
            yield loss, kept, hits


def evaluate(model, data, batch_size, S, comm=None):
    """Mean loss over every kept step of data (time-major, as _prepare gives), and
    the fraction of rows classified right (None but for one label per row). With
    comm (fastlstm.distributed), each rank evaluates its part of the rows."""
    rows = np.arange(data[0].shape[1])
    if comm is not None:
        rows = comm.share(rows)
    total, count, right = 0.0, 0, 0
    for loss, n, hits in _windows(data, rows, batch_size, S, model, train=False):
        total += loss * n
        count += n
        right += hits or 0
    if comm is not None:
        total, count, right = comm.reduce_sums([total, count, right])
    accuracy = right / data[0].shape[1] if model.classifies else None
    return total / max(count, 1), accuracy


def _record(history, model, epoch, loss, tokens, hits, wall, val, batch_size, S, comm):
    tokens_model = model.loss_name == "xent" and not model.per_sequence
    history.epoch.append(epoch)
    history.loss.append(loss)
    history.perplexity.append(math.exp(min(loss, 700)) if tokens_model else None)
    history.accuracy.append(hits / tokens if hits is not None and tokens else None)
    v, v_accuracy = (None, None) if val is None else evaluate(model, val, batch_size, S,
                                                              comm)
    history.val_loss.append(v)
    history.val_accuracy.append(v_accuracy)
    history.val_perplexity.append(math.exp(min(v, 700)) if tokens_model and v is not None
                                  else None)
    history.wall_time.append(wall)
    history.tokens_per_s.append(tokens / max(wall, 1e-9))
    history.best_epoch.append(None)


def _train_state(opt, history, epoch, seed, best=None):
    """What a checkpoint holds to resume from; with best (a BestEpoch of an earlier
    epoch), the best epoch's weights, which it saves as the model's."""
    hyper = {k: v for k, v in vars(opt).items() if k not in ("state", "backend")}
    name = next(n for n, cls in OPTIMIZERS.items() if type(opt) is cls)
    state = dict(meta=dict(epoch=epoch, seed=seed, optimizer=dict(name=name, **hyper),
                           history=history.to_dict()),
                 optim=opt.state)
    if best is not None and best.epoch != epoch:
        state["best"] = best.weights
    return state


def _resume(to_save, model, opt, path, saved_weights):
    """The model's weights and opt's state from the checkpoint at path (the last
    epoch's), the checkpoint's model's weights into saved_weights (the best
    epoch's where the run kept it); returns the History and the epochs done."""
    saved, state = load_checkpoint(path, backend=model.backend)
    if to_save is not model and (
            getattr(saved, "checkpoint_kind", None) != to_save.checkpoint_kind
            or saved.checkpoint_extra() != to_save.checkpoint_extra()):
        raise ValueError(f"{path}: holds another {type(saved).__name__} than this "
                         f"{type(to_save).__name__} (its vocabulary or scaling differ)")
    saved = getattr(saved, "model", saved)
    if state is None:
        raise ValueError(f"{path}: holds no training state to resume from")
    params, saved_params = model.params, saved.params
    last = state.get("last", saved_params)
    if any(params.keys() != w.keys() or any(params[k].shape != w[k].shape for k in params)
           for w in (saved_params, last)):
        raise ValueError(f"{path}: its model is not this model ({saved!r})")
    name = state["meta"]["optimizer"]["name"]
    if not isinstance(opt, OPTIMIZERS[name]):
        raise ValueError(f"{path}: was trained with {name!r}, not {type(opt).__name__}")
    for k in params:
        params[k][...] = last[k]
        saved_weights[k][...] = saved_params[k]
    opt.state = dict(state["optim"])
    return History.from_dict(state["meta"]["history"]), int(state["meta"]["epoch"])

