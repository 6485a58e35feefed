/* Let gcc vectorise the gate passes' exp and tanh through glibc's libmvec.
 *
 * glibc declares the SIMD variants of its math functions only under -ffast-math,
 * which would also drop NaN/inf semantics. Declaring them here gets the vector
 * calls with plain -O3 -fno-math-errno. Elsewhere (other libc, other CPU) this
 * header is empty and the loops stay scalar: slower, same results.
 */
#ifndef FASTLSTM_SIMD_MATH_H
#define FASTLSTM_SIMD_MATH_H
#include <math.h>
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) \
    && defined(__GLIBC__) && !defined(__FAST_MATH__)
__attribute__((__simd__("notinbranch"))) float expf(float);
__attribute__((__simd__("notinbranch"))) float tanhf(float);
__attribute__((__simd__("notinbranch"))) double exp(double);
__attribute__((__simd__("notinbranch"))) double tanh(double);
#endif
#endif
