"""What this installation runs on: the CPU, the instruction-set level of the
compiled kernels and why, the backends, the threads (fastlstm.show_config())."""
import os
import platform

from . import _cy
from ._threads import get_num_threads
from ._version import __version__
from .backends import available_backends

__all__ = ["config", "show_config", "cpu_model"]


def cpu_model():
    """The CPU's model name (Linux's /proc/cpuinfo), else what platform knows."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def config():
    """{name: value} of what show_config prints."""
    features = _cy.cpu_features()
    vector = [f for f in ("avx", "avx2", "fma", "avx512f", "avx512bw", "avx512_bf16")
              if features.get(f)]
    bf16 = _cy.bf16_kernel() if _cy.level() else (None, "no compiled kernels")
    return dict(fastlstm=__version__, python=platform.python_version(),
                machine=platform.machine(), cpu=cpu_model(), cores=os.cpu_count(),
                cpu_vector_features=vector, level=_cy.level(), level_reason=_cy.reason(),
                levels_built=_cy.built_levels(), levels_runnable=_cy.supported_levels(),
                bf16=bf16[0], bf16_reason=bf16[1],
                backends=available_backends(), threads=get_num_threads())


def show_config():
    """Print config() one line each, and return it."""
    c = config()
    lines = [f"fastlstm {c['fastlstm']} on Python {c['python']}, {c['machine']}",
             f"cpu: {c['cpu']} ({c['cores']} cores; "
             f"{', '.join(c['cpu_vector_features']) or 'no AVX'})",
             f"kernels: {c['level']}: {c['level_reason']}",
             f"bf16: {c['bf16']}: {c['bf16_reason']}",
             f"levels built: {', '.join(c['levels_built']) or 'none'}; "
             f"this machine runs: {', '.join(c['levels_runnable']) or 'none'}",
             f"backends: {', '.join(c['backends'])}; threads: {c['threads']}"]
    print("\n".join(lines))
    return c
