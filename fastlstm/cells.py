"""The facts about each cell, in one table, which every other module reads.

    cell  gate blocks  biases  state  the forward's cache
    rnn   a            b       h      x Wx Wh h0 y
    lstm  i f g o      b       h c    x Wx Wh h0 c0 y c gates
    gru   r z n        bx bh   h      x Wx Wh h0 y gates hn

The gate blocks are the column blocks of Wx and Wh, H columns each, in this order
(the RNN has one, its pre-activation a). From them follow the kernel contract's
arguments and results (docs/DESIGN.md, "The kernel contract"):

    <cell>_forward(x, Wx, Wh, *biases, *(s0 for s in state), cache=True)
        -> y, *(sT for s in state), cache
    <cell>_backward(cache, dy, *(dsT for s in state))
        -> dx, dWx, dWh, *(d<bias>), *(ds0 for s in state)
"""
import dataclasses

__all__ = ["Cell", "CELLS"]


@dataclasses.dataclass(frozen=True)
class Cell:
    """One cell kind: its name, gate blocks, biases, state and cache keys."""
    name: str
    gates: tuple
    biases: tuple
    states: tuple
    cache: tuple

    @property
    def G(self):
        """Gate blocks: Wx is (I, G*H), Wh (H, G*H)."""
        return len(self.gates)

    @property
    def forward_args(self):
        """The forward's array arguments, in order."""
        return ("x", "Wx", "Wh") + self.biases + tuple(f"{s}0" for s in self.states)

    @property
    def forward_outputs(self):
        """The forward's results before the cache."""
        return ("y",) + tuple(f"{s}T" for s in self.states)

    @property
    def backward_args(self):
        """The backward's gradients in (after the cache)."""
        return ("dy",) + tuple(f"d{s}T" for s in self.states)

    @property
    def backward_outputs(self):
        """The backward's results: the gradient of each forward argument, in order."""
        return tuple(f"d{a}" for a in self.forward_args)

    def shapes(self, T, B, I, H):
        """{argument or result: shape} for sizes T, B, I, H."""
        G = self.G
        out = dict(x=(T, B, I), Wx=(I, G * H), Wh=(H, G * H), y=(T, B, H),
                   c=(T, B, H), gates=(T, B, G * H), hn=(T, B, H))
        out.update({b: (G * H,) for b in self.biases})
        for s in self.states:
            out.update({f"{s}0": (B, H), f"{s}T": (B, H)})
        return out


CELLS = {
    "rnn": Cell("rnn", gates=("a",), biases=("b",), states=("h",),
                cache=("x", "Wx", "Wh", "h0", "y")),
    "lstm": Cell("lstm", gates=("i", "f", "g", "o"), biases=("b",), states=("h", "c"),
                 cache=("x", "Wx", "Wh", "h0", "c0", "y", "c", "gates")),
    "gru": Cell("gru", gates=("r", "z", "n"), biases=("bx", "bh"), states=("h",),
                cache=("x", "Wx", "Wh", "h0", "y", "gates", "hn")),
}
