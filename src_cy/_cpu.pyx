# cython: language_level=3
"""The CPU's features and the OS's register state (src_cy/cpu_features.h), read
once; built at the baseline level alone, for fastlstm._cy to choose the level of
the kernels with."""

cdef extern from "cpu_features.h" nogil:
    ctypedef struct fl_cpu_features:
        int x86_64
        int cx16, lahf, popcnt, sse3, sse4_1, sse4_2, ssse3
        int avx, avx2, bmi1, bmi2, f16c, fma, lzcnt, movbe, osxsave, xsave
        int avx512f, avx512bw, avx512cd, avx512dq, avx512vl
        int avx512_bf16
        int os_ymm, os_zmm
        unsigned long long xcr0
    void fl_cpu_features_read(fl_cpu_features* f)


def features():
    """{name: bool} of what CPUID and XCR0 report (all False off x86-64), and
    "xcr0": the register state the OS saves, as an int."""
    cdef fl_cpu_features f
    fl_cpu_features_read(&f)
    found = {k: bool(v) for k, v in (<object>f).items() if k != "xcr0"}
    found["xcr0"] = int(f.xcr0)
    return found
