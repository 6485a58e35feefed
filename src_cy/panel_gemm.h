/* The per-step recurrent product on weights packed once per call (DESIGN.md
 * section 4, weight-stationary).
 *
 * BLAS packs its B operand again at every call: for the per-step h_{t-1} Wh that
 * repacking took more time than the multiply itself (perf, B=16 H=256). Here the
 * weights are packed once, before the time loop, into panels of K rows by one
 * vector of FL_U columns, and each step streams them through a register tile.
 *
 *   fl_panel_gemm_T(M, K, npanels, A, lda, P, pstride, C, ldc, cstride, add, bias)
 *     for r < M, v < npanels, u < FL_U:
 *       C[r*ldc + v*cstride + u] (+)= bias[v*cstride + u]
 *                                     + sum_k A[r*lda + k] * P[v*pstride + k*FL_U + u]
 *   fl_panel_gemm_at_T: the same with A[k*lda + r], A given transposed (the
 *     weight gradients X.T dA, where X is (K, M) row-major).
 *
 * Panel v's columns go to C at v*cstride, so one call can write the gate blocks
 * of a group of units (cstride = the gate blocks' distance) or consecutive units
 * (cstride = FL_U). C is overwritten, or added to where `add` is non-zero; every
 * panel writes FL_U columns, so C is padded to whole panels. Where bias is not
 * NULL (and add is zero), each row of C starts from it instead of from zero: the
 * input projection's + b costs no pass of its own over C.
 *
 * GCC vector extensions: with -march=native they compile to the machine's widest
 * vectors; elsewhere GCC splits them, slower and with the same results.
 */
#ifndef FASTLSTM_PANEL_GEMM_H
#define FASTLSTM_PANEL_GEMM_H

#if defined(__AVX512F__)
#define FL_VBYTES 64
#define FL_MR 6   /* 6 x 4 accumulators + 4 panel vectors of the 32 registers */
#elif defined(__AVX__)
#define FL_VBYTES 32
#define FL_MR 2   /* 2 x 4 + 4 of 16 registers, room for the broadcasts */
#else
#define FL_VBYTES 16
#define FL_MR 2
#endif
#define FL_NV 4   /* panels per tile */

#define FL_INLINE static inline __attribute__((always_inline))

#define FL_DEFINE_PANEL_GEMM(T, SUF)                                                   \
typedef T fl_vec_##SUF __attribute__((vector_size(FL_VBYTES), aligned(sizeof(T))));    \
enum { FL_U_##SUF = FL_VBYTES / sizeof(T) };                                           \
                                                                                       \
/* One mr x nv tile; mr, nv are constants after inlining, so acc lives in registers */ \
FL_INLINE void fl_tile_##SUF(const int mr, const int nv, long K, const T* A, long sr,  \
                             long sk, const T* P, long pstride, T* C, long ldc,        \
                             long cstride, int add, const T* bias)                     \
{                                                                                      \
    fl_vec_##SUF acc[FL_MR][FL_NV];                                                    \
    _Pragma("GCC unroll 8") for (int r = 0; r < mr; r++)                               \
        _Pragma("GCC unroll 4") for (int v = 0; v < nv; v++)                           \
            acc[r][v] = add    ? *(fl_vec_##SUF*)(C + r * ldc + v * cstride)           \
                      : bias   ? *(const fl_vec_##SUF*)(bias + v * cstride)            \
                               : (fl_vec_##SUF){0};                                    \
    for (long k = 0; k < K; k++) {                                                     \
        fl_vec_##SUF w[FL_NV];                                                         \
        _Pragma("GCC unroll 4") for (int v = 0; v < nv; v++)                           \
            w[v] = *(const fl_vec_##SUF*)(P + v * pstride + k * FL_U_##SUF);           \
        _Pragma("GCC unroll 8") for (int r = 0; r < mr; r++) {                         \
            const T a = A[r * sr + k * sk];                                            \
            _Pragma("GCC unroll 4") for (int v = 0; v < nv; v++)                       \
                acc[r][v] += a * w[v];                                                 \
        }                                                                              \
    }                                                                                  \
    _Pragma("GCC unroll 8") for (int r = 0; r < mr; r++)                               \
        _Pragma("GCC unroll 4") for (int v = 0; v < nv; v++)                           \
            *(fl_vec_##SUF*)(C + r * ldc + v * cstride) = acc[r][v];                   \
}                                                                                      \
                                                                                       \
FL_INLINE void fl_tile_rows_##SUF(int mr, const int nv, long K, const T* A, long sr,   \
                                  long sk, const T* P, long pstride, T* C, long ldc,   \
                                  long cstride, int add, const T* bias)                \
{                                                                                      \
    switch (mr) {                                                                      \
    case 1: fl_tile_##SUF(1, nv, K, A, sr, sk, P, pstride, C, ldc, cstride, add, bias); break; \
    case 2: fl_tile_##SUF(2, nv, K, A, sr, sk, P, pstride, C, ldc, cstride, add, bias); break; \
    FL_MORE_ROWS_##SUF                                                                 \
    }                                                                                  \
}                                                                                      \
                                                                                       \
FL_INLINE void fl_panels_##SUF(long M, long K, long npanels, const T* A, long sr,      \
                               long sk, const T* P, long pstride, T* C, long ldc,      \
                               long cstride, int add, const T* bias)                   \
{                                                                                      \
    /* Panels outside, rows inside: a group of FL_NV panels (K x FL_NV vectors)        \
       stays in L2 while every row block passes over it. */                            \
    for (long v = 0; v < npanels; v += FL_NV) {                                        \
        const long nv = npanels - v < FL_NV ? npanels - v : FL_NV;                     \
        for (long r = 0; r < M; r += FL_MR) {                                          \
            const int mr = M - r < FL_MR ? (int)(M - r) : FL_MR;                       \
            const T* a = A + r * sr;                                                   \
            const T* p = P + v * pstride;                                              \
            T* c = C + r * ldc + v * cstride;                                          \
            const T* bv = bias ? bias + v * cstride : bias;                            \
            switch (nv) {                                                              \
            case 1: fl_tile_rows_##SUF(mr, 1, K, a, sr, sk, p, pstride, c, ldc, cstride, add, bv); break; \
            case 2: fl_tile_rows_##SUF(mr, 2, K, a, sr, sk, p, pstride, c, ldc, cstride, add, bv); break; \
            case 3: fl_tile_rows_##SUF(mr, 3, K, a, sr, sk, p, pstride, c, ldc, cstride, add, bv); break; \
            default: fl_tile_rows_##SUF(mr, 4, K, a, sr, sk, p, pstride, c, ldc, cstride, add, bv); \
            }                                                                          \
        }                                                                              \
    }                                                                                  \
}                                                                                      \
                                                                                       \
/* A row-major (M, K): its rows are contiguous. */                                     \
static void fl_panel_gemm_##SUF(long M, long K, long npanels, const T* A, long lda,    \
                                const T* P, long pstride, T* C, long ldc, long cstride, \
                                int add, const T* bias)                                \
{                                                                                      \
    fl_panels_##SUF(M, K, npanels, A, lda, 1, P, pstride, C, ldc, cstride, add, bias); \
}                                                                                      \
                                                                                       \
/* A given as its transpose, row-major (K, M), the tile's rows side by side. */        \
static void fl_panel_gemm_at_##SUF(long M, long K, long npanels, const T* A, long lda, \
                                   const T* P, long pstride, T* C, long ldc,           \
                                   long cstride, int add, const T* bias)               \
{                                                                                      \
    fl_panels_##SUF(M, K, npanels, A, 1, lda, P, pstride, C, ldc, cstride, add, bias); \
}

#if FL_MR == 6
#define FL_MORE_ROWS(SUF)                                                              \
    case 3: fl_tile_##SUF(3, nv, K, A, sr, sk, P, pstride, C, ldc, cstride, add, bias); break; \
    case 4: fl_tile_##SUF(4, nv, K, A, sr, sk, P, pstride, C, ldc, cstride, add, bias); break; \
    case 5: fl_tile_##SUF(5, nv, K, A, sr, sk, P, pstride, C, ldc, cstride, add, bias); break; \
    default: fl_tile_##SUF(6, nv, K, A, sr, sk, P, pstride, C, ldc, cstride, add, bias);
#else
#define FL_MORE_ROWS(SUF)
#endif
#define FL_MORE_ROWS_f FL_MORE_ROWS(f)
#define FL_MORE_ROWS_d FL_MORE_ROWS(d)

FL_DEFINE_PANEL_GEMM(float, f)
FL_DEFINE_PANEL_GEMM(double, d)

#endif
