/* What this CPU and its OS let compiled code use: CPUID's feature bits, and XCR0,
 * which says whose register state the OS saves on a context switch. A CPU can
 * have AVX-512 while the OS does not save the zmm registers; then AVX-512 code
 * must not run. fastlstm._cy picks the level of the kernels from these
 * (docs/DESIGN.md, "One build for every x86-64").
 *
 * This file is compiled at the baseline level only, so that it runs on any CPU.
 * Off x86-64 (or with a compiler without <cpuid.h>) every feature reads 0.
 */
#ifndef FASTLSTM_CPU_FEATURES_H
#define FASTLSTM_CPU_FEATURES_H

#include <string.h>

typedef struct {
    int x86_64;
    /* the x86-64-v2 level */
    int cx16, lahf, popcnt, sse3, sse4_1, sse4_2, ssse3;
    /* the x86-64-v3 level */
    int avx, avx2, bmi1, bmi2, f16c, fma, lzcnt, movbe, osxsave, xsave;
    /* the x86-64-v4 level */
    int avx512f, avx512bw, avx512cd, avx512dq, avx512vl;
    int avx512_bf16;
    /* XCR0: the OS saves the ymm (bits 1, 2) and the zmm and mask (5, 6, 7) state */
    int os_ymm, os_zmm;
    unsigned long long xcr0;
} fl_cpu_features;

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#define FL_CPUID_X86 1

static unsigned long long fl_xgetbv0(void)
{
    unsigned int eax, edx;
    /* the instruction's bytes, so that no -mxsave is needed to assemble it */
    __asm__ volatile(".byte 0x0f, 0x01, 0xd0" : "=a"(eax), "=d"(edx) : "c"(0));
    return ((unsigned long long)edx << 32) | eax;
}
#endif

static void fl_cpu_features_read(fl_cpu_features* f)
{
    memset(f, 0, sizeof(*f));
#ifdef FL_CPUID_X86
    unsigned int a, b, c, d, top, top_ext;
    f->x86_64 = 1;
    top = __get_cpuid_max(0, 0);
    top_ext = __get_cpuid_max(0x80000000u, 0);
    if (top >= 1) {
        __cpuid(1, a, b, c, d);
        f->sse3 = (c >> 0) & 1;
        f->ssse3 = (c >> 9) & 1;
        f->fma = (c >> 12) & 1;
        f->cx16 = (c >> 13) & 1;
        f->sse4_1 = (c >> 19) & 1;
        f->sse4_2 = (c >> 20) & 1;
        f->movbe = (c >> 22) & 1;
        f->popcnt = (c >> 23) & 1;
        f->xsave = (c >> 26) & 1;
        f->osxsave = (c >> 27) & 1;
        f->avx = (c >> 28) & 1;
        f->f16c = (c >> 29) & 1;
    }
    if (top >= 7) {
        __cpuid_count(7, 0, a, b, c, d);
        f->bmi1 = (b >> 3) & 1;
        f->avx2 = (b >> 5) & 1;
        f->bmi2 = (b >> 8) & 1;
        f->avx512f = (b >> 16) & 1;
        f->avx512dq = (b >> 17) & 1;
        f->avx512cd = (b >> 28) & 1;
        f->avx512bw = (b >> 30) & 1;
        f->avx512vl = (b >> 31) & 1;
        if (a >= 1) {
            __cpuid_count(7, 1, a, b, c, d);
            f->avx512_bf16 = (a >> 5) & 1;
        }
    }
    if (top_ext >= 0x80000001u) {
        __cpuid(0x80000001u, a, b, c, d);
        f->lahf = (c >> 0) & 1;
        f->lzcnt = (c >> 5) & 1;
    }
    if (f->osxsave) {
        f->xcr0 = fl_xgetbv0();
        f->os_ymm = (f->xcr0 & 0x6) == 0x6;
        f->os_zmm = (f->xcr0 & 0xe6) == 0xe6;
    }
#endif
}

#endif
