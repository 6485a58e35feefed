"""Compiled Cython kernels, built from src_cy/ by setup.py once per instruction-set
level, and the one place that picks the level a process runs.

The levels, worst to best: "baseline" (x86-64's SSE2, or whatever the compiler
targets off x86-64), "avx2" (x86-64-v3: AVX2, FMA, BMI1/2, F16C, LZCNT, MOVBE)
and "avx512" (x86-64-v4: AVX-512 F, BW, CD, DQ, VL). Each level's modules are
the same source compiled for it, in the subpackage of its name
(fastlstm._cy.avx2._lstm). The chosen level is the best one built that the CPU
has and the OS saves the registers of (CPUID and XCR0, read by _cpu), or the one
FASTLSTM_ISA names; naming one this machine cannot run is a RuntimeError at
import, never an illegal instruction later (as NumPy's NPY_ENABLE_CPU_FEATURES).
"""
import importlib
import importlib.util
import os

__all__ = ["LEVELS", "REQUIRES", "built_levels", "supported_levels", "level", "reason",
           "module", "sibling", "bf16_kernel"]

LEVELS = ("baseline", "avx2", "avx512")
# What code compiled for a level may use: -march=x86-64-v3 and -v4 let the
# compiler emit any instruction of them, so each level needs all of its own and
# the levels' below it.
_V2 = ("cx16", "lahf", "popcnt", "sse3", "sse4_1", "sse4_2", "ssse3")
_V3 = _V2 + ("avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "lzcnt", "movbe", "xsave",
             "osxsave", "os_ymm")
REQUIRES = {
    "baseline": (),
    "avx2": _V3,
    "avx512": _V3 + ("avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl",
                     "os_zmm"),
}
ENV = "FASTLSTM_ISA"
# bf16's dot product (vdpbf16ps) runs only on top of the avx512 level
BF16_REQUIRES = REQUIRES["avx512"] + ("avx512_bf16",)
BF16_ENV = "FASTLSTM_BF16"


def built_levels():
    """The levels this installation holds modules of, worst first."""
    return [name for name in LEVELS
            if importlib.util.find_spec(f"{__name__}.{name}._lstm") is not None]


def cpu_features():
    """CPUID's and XCR0's features ({name: bool}, and "xcr0"); {} where the
    detector was not built."""
    try:
        from ._cpu import features
    except ImportError:
        return {}
    return features()


def missing(name, features):
    """The features of level name that `features` lacks (every one where x86_64 is
    not among them; none for the baseline)."""
    if name == "baseline":
        return []
    if not features.get("x86_64"):
        return ["an x86-64 CPU"]
    return [f for f in REQUIRES[name] if not features.get(f)]


def choose(built, features, forced=None):
    """(level, why): the level forced (FASTLSTM_ISA's value), which must be built
    and runnable, else the best of built that the features allow. A RuntimeError
    where forced cannot be had; None where nothing is built."""
    if forced:
        if forced not in LEVELS:
            raise RuntimeError(f"{ENV}={forced!r}: expected one of {', '.join(LEVELS)}")
        if forced not in built:
            raise RuntimeError(f"{ENV}={forced}: this installation has no {forced} "
                               f"kernels (built: {', '.join(built) or 'none'})")
        lacks = missing(forced, features)
        if lacks:
            raise RuntimeError(f"{ENV}={forced}: this machine cannot run it: it lacks "
                               f"{', '.join(lacks)}")
        return forced, f"{ENV}={forced}"
    why = []
    for name in reversed(LEVELS):
        if name not in built:
            continue
        lacks = missing(name, features)
        if not lacks:
            return name, "the best level built that this CPU and OS run" + (
                f" ({'; '.join(why)})" if why else "")
        why.append(f"not {name}: lacks {', '.join(lacks)}")
    return None, "no compiled kernels are built"


_FEATURES = cpu_features()
_LEVEL, _REASON = choose(built_levels(), _FEATURES, os.environ.get(ENV, "").strip() or None)


def supported_levels():
    """The levels built that this machine runs, worst first."""
    return [name for name in built_levels() if not missing(name, _FEATURES)]


def level():
    """The level this process runs ("baseline", "avx2" or "avx512"); None where no
    kernels are built."""
    return _LEVEL


def reason():
    """Why that level: forced by FASTLSTM_ISA, or what the better ones lack."""
    return _REASON


def module(name, at=None):
    """The compiled module `name` (e.g. "_lstm") of level `at` (default: the chosen
    level). An ImportError where it is not built; a RuntimeError where the machine
    cannot run that level."""
    at = at or _LEVEL
    if at is None:
        raise ImportError(f"fastlstm's compiled kernels are not built: {_REASON}")
    if at not in LEVELS:
        raise ValueError(f"level: expected one of {', '.join(LEVELS)}, got {at!r}")
    lacks = missing(at, _FEATURES)
    if lacks:
        raise RuntimeError(f"the {at} kernels cannot run here: this machine lacks "
                           f"{', '.join(lacks)}")
    return importlib.import_module(f"{__name__}.{at}.{name}")


def sibling(name, other):
    """The module `other` (e.g. "_panels") of the level of the module called name
    (its __name__, fastlstm._cy.avx2._lstm). The kernel modules import each other
    through this, never relatively: Cython resolves a relative import against the
    name a module was compiled under (fastlstm._cy._lstm), which every level's copy
    shares, so the first level imported served them all."""
    return importlib.import_module(f"{name.rpartition('.')[0]}.{other}")


def bf16_kernel(at=None):
    """(kernel, why): how precision="bf16" runs at level `at` (default: the chosen
    level): "native" on AVX512_BF16's vdpbf16ps, or "emulated", the same sums of
    the same bf16 products on fp32 FMAs (about half the speed). FASTLSTM_BF16=
    emulated forces the emulation; FASTLSTM_BF16=native where it cannot run is a
    RuntimeError."""
    at = at or _LEVEL
    forced = os.environ.get(BF16_ENV, "").strip()
    if forced not in ("", "native", "emulated"):
        raise RuntimeError(f"{BF16_ENV}={forced!r}: expected native or emulated")
    lacks = [f for f in BF16_REQUIRES if not _FEATURES.get(f)]
    if at != "avx512":
        lacks.append(f"the avx512 kernels (this process runs {at})")
    if forced == "emulated":
        return "emulated", f"{BF16_ENV}=emulated"
    if not lacks:
        return "native", "AVX512_BF16 (vdpbf16ps)"
    if forced == "native":
        raise RuntimeError(f"{BF16_ENV}=native: this machine cannot run it: it lacks "
                           f"{', '.join(lacks)}")
    return "emulated", f"no bf16 dot product: lacks {', '.join(lacks)}"
