"""Builds every src_cy/*.pyx into the extension fastlstm._cy.<name>.

Environment switches:
  FASTLSTM_DEBUG=1      bounds, wraparound and initialization checks on, -O0 -g
  FASTLSTM_NO_OPENMP=1  build without OpenMP (the kernels' loops then run serially)
  FASTLSTM_PORTABLE=1   no -march=native (for wheels that run on other machines)
"""
import glob
import os
import sys
import sysconfig

from Cython.Build import cythonize
from setuptools import Extension, setup

DEBUG = os.environ.get("FASTLSTM_DEBUG") == "1"
OPENMP = os.environ.get("FASTLSTM_NO_OPENMP") != "1"
NATIVE = os.environ.get("FASTLSTM_PORTABLE") != "1"


def openmp_flags():
    if not OPENMP:
        return [], []
    if sys.platform == "win32":
        return ["/openmp"], []
    return ["-fopenmp"], ["-fopenmp"]


def optimisation_flags():
    if sys.platform == "win32":
        return ["/O2"]
    if DEBUG:
        return ["-O0", "-g"]
    # No -ffast-math: NaN/inf semantics stay. src_cy/simd_math.h vectorises exp and
    # tanh instead (bench/RESULTS.md: scalar, they cost more than half the forward).
    # -march=native: `pip install .` builds for the machine it runs on. With AVX-512,
    # gcc still prefers 256-bit vectors for loops; the panel kernel uses 512-bit ones
    # anyway, and at 512 bits the forward's gate pass takes a third less time (perf,
    # B=16 H=256: exp and tanh at half the cost).
    flags = ["-O3", "-fno-math-errno", "-fno-trapping-math"]
    if "clang" not in (os.environ.get("CC") or sysconfig.get_config_var("CC") or ""):
        # The fused gate loops read and write several streams of one row; gcc's
        # default of 10 run-time alias checks is too few to vectorise them.
        flags.append("--param=vect-max-version-for-alias-checks=64")
    return flags + (["-march=native", "-mprefer-vector-width=512"] if NATIVE else [])


compile_omp, link_omp = openmp_flags()
extensions = [
    Extension(
        f"fastlstm._cy.{os.path.splitext(os.path.basename(pyx))[0]}",
        [pyx],
        include_dirs=["src_cy"],
        depends=glob.glob("src_cy/*.pxd") + glob.glob("src_cy/*.h"),
        extra_compile_args=optimisation_flags() + compile_omp,
        extra_link_args=link_omp,
        libraries=[] if sys.platform == "win32" else ["m"],
    )
    for pyx in sorted(glob.glob("src_cy/*.pyx"))
]

setup(
    # every extension compiles at once, one per core (pip builds them one by one)
    options={"build_ext": {"parallel": os.cpu_count() or 1}},
    ext_modules=cythonize(
        extensions,
        include_path=["src_cy"],
        compiler_directives={
            "language_level": 3,
            "boundscheck": DEBUG,
            "wraparound": DEBUG,
            "initializedcheck": DEBUG,
            "cdivision": not DEBUG,
        },
    ),
)
