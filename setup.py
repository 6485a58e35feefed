"""Builds src_cy/*.pyx into the extensions fastlstm._cy.<level>.<name>, one copy per
instruction-set level, and the modules of BASELINE_ONLY (src_cy/_cpu.pyx, _team.pyx)
once, into fastlstm._cy._cpu and fastlstm._cy._team.

Every kernel module is cythonized once and compiled for each level of LEVELS that
the compiler can target (on x86-64: the baseline, x86-64-v3 and x86-64-v4; on
other machines the baseline alone). fastlstm._cy picks the level when the package
is imported (docs/DESIGN.md, "One build for every x86-64"), so a wheel built here
runs at full speed on any x86-64.

Environment switches:
  FASTLSTM_DEBUG=1      bounds, wraparound and initialization checks on, -O0 -g
  FASTLSTM_NO_OPENMP=1  build without OpenMP (the kernels' loops then run serially)
"""
import glob
import os
import sys
import sysconfig
import tempfile

from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

DEBUG = os.environ.get("FASTLSTM_DEBUG") == "1"
OPENMP = os.environ.get("FASTLSTM_NO_OPENMP") != "1"
GNU = sys.platform != "win32"

# The flags of each level (GCC and Clang). -mprefer-vector-width=512: with
# AVX-512, gcc still prefers 256-bit vectors for loops; the panel kernel uses
# 512-bit ones anyway, and at 512 bits the forward's gate pass takes a third less
# time (perf, B=16 H=256: exp and tanh at half the cost). No -mtune: the code runs
# on every CPU of its level.
LEVELS = {
    "baseline": [],
    "avx2": ["-march=x86-64-v3"],
    "avx512": ["-march=x86-64-v4", "-mprefer-vector-width=512"],
}
LEVEL_DIR = os.path.join("build", "fastlstm-levels")
# Compiled once, at the baseline: the CPU's features (read before a level is
# chosen) and the team's wake (no arithmetic; every level shares one OpenMP runtime).
BASELINE_ONLY = ("_cpu", "_team")


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
    # -g0: Python's own CFLAGS ask for debug information, a third of the build's
    # time (three levels of eight modules).
    flags = ["-O3", "-g0", "-fno-math-errno", "-fno-trapping-math"]
    if "clang" not in (os.environ.get("CC") or sysconfig.get_config_var("CC") or ""):
        # The fused gate loops read and write several streams of one row; gcc's
        # default of 10 run-time alias checks is too few to vectorise them.
        flags.append("--param=vect-max-version-for-alias-checks=64")
    return flags


def level_source(c_file, level):
    """A C file of its own for c_file's copy at level: it includes c_file, so that
    each level's object file has its own name and the builds run side by side."""
    folder = os.path.join(LEVEL_DIR, level)
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, os.path.basename(c_file))
    text = f'#include "{os.path.abspath(c_file)}"\n'
    if not os.path.exists(path) or open(path).read() != text:
        with open(path, "w") as f:
            f.write(text)
    return path


class build_levels(build_ext):
    """build_ext that leaves out the levels the compiler cannot target (off x86-64,
    or a compiler older than -march=x86-64-v3, GCC 11 and Clang 12)."""

    def build_extensions(self):
        usable = {level: self._compiles(flags) for level, flags in LEVELS.items()}
        for level, ok in usable.items():
            if not ok:
                print(f"fastlstm: the compiler cannot target {level} "
                      f"({' '.join(LEVELS[level])}); leaving it out")
        self.extensions = [e for e in self.extensions
                           if usable.get(getattr(e, "level", "baseline"), True)]
        super().build_extensions()

    def _compiles(self, flags):
        if not flags:
            return True
        with tempfile.TemporaryDirectory() as tmp:
            src = os.path.join(tmp, "probe.c")
            with open(src, "w") as f:
                f.write("int main(void) { return 0; }\n")
            try:
                self.compiler.compile([src], output_dir=tmp, extra_postargs=flags)
            except Exception:
                return False
        return True


def extensions():
    compile_omp, link_omp = openmp_flags()
    common = dict(include_dirs=["src_cy"], extra_link_args=link_omp,
                  depends=glob.glob("src_cy/*.pxd") + glob.glob("src_cy/*.h"),
                  libraries=[] if sys.platform == "win32" else ["m"])
    flags = optimisation_flags() + compile_omp
    kernels = [os.path.splitext(os.path.basename(p))[0]
               for p in sorted(glob.glob("src_cy/*.pyx"))
               if os.path.basename(p)[:-4] not in BASELINE_ONLY]
    cythonized = cythonize(
        [Extension(f"fastlstm._cy.{name}", [f"src_cy/{name}.pyx"], **common)
         for name in kernels + list(BASELINE_ONLY)],
        include_path=["src_cy"],
        compiler_directives={
            "language_level": 3,
            "boundscheck": DEBUG,
            "wraparound": DEBUG,
            "initializedcheck": DEBUG,
            "cdivision": not DEBUG,
        },
    )
    c_files = {ext.name.rsplit(".", 1)[1]: ext.sources[0] for ext in cythonized}
    out = [Extension(f"fastlstm._cy.{name}", [c_files[name]], extra_compile_args=flags,
                     **common) for name in BASELINE_ONLY]
    # Off GCC and Clang (MSVC) the baseline alone.
    for level, level_flags in (LEVELS if GNU else {"baseline": []}).items():
        for name in kernels:
            ext = Extension(f"fastlstm._cy.{level}.{name}",
                            [level_source(c_files[name], level)],
                            extra_compile_args=flags + level_flags,
                            **dict(common, depends=common["depends"] + [c_files[name]]))
            ext.level = level
            out.append(ext)
    return out


setup(
    # every extension compiles at once, one per core (pip builds them one by one)
    options={"build_ext": {"parallel": os.cpu_count() or 1}},
    cmdclass={"build_ext": build_levels},
    ext_modules=extensions(),
)
