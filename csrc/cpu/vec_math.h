// Elementwise float32 math that GCC vectorises, and the per-ISA clones of the loops using it.
//
// Include it after every other header: the pragma below then applies to the including file's
// own functions only. The loops that call exp_f32 are branch-free so that they vectorise, and
// GCC only if-converts their clamps and selects when it may assume that comparisons do not
// trap (torch itself is built with -fno-trapping-math).
#pragma once

#include <cstdint>
#include <cstring>

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")
#endif

// One clone of a float loop per x86-64 vector width, chosen at load time (the baseline build
// alone only has SSE2).
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define SUBLOCAL_VECTOR_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define SUBLOCAL_VECTOR_CLONES
#endif

namespace sublocal {

// Sixteen float32 lanes as a GCC vector: each clone lowers it to its own width (one zmm,
// two ymm, four xmm), so loops written on it keep their state in registers on every ISA.
typedef float vfloat16 __attribute__((vector_size(64)));
typedef int32_t vint16 __attribute__((vector_size(64)));

__attribute__((always_inline)) inline vfloat16 load16(const float* p) {
  vfloat16 v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
__attribute__((always_inline)) inline void store16(float* p, vfloat16 v) { std::memcpy(p, &v, sizeof(v)); }

// Not std::bit_cast: GCC 12 leaves that out of line in the target_clones clones (it showed in
// perf as a called symbol), and the cell loops around exp_poly stopped vectorising: the mLSTM's
// inference step at H = 1900, B = 64 went from 16.1 to 20-23 ms (2 threads). always_inline and
// memcpy keep it a register move in every clone.
template <typename To, typename From>
__attribute__((always_inline)) inline To bits_as(From x) {
  static_assert(sizeof(To) == sizeof(From), "bits_as: sizes differ");
  To y;
  std::memcpy(&y, &x, sizeof(y));
  return y;
}

// exp for float32 without a library call (so loops around it vectorise; std::exp is a scalar
// call that bounds any loop around it to a few ns per element): Cephes' expf polynomial after
// rounding x log2(e) to the nearest integer n; 2^n is built in the exponent bits. Relative
// error about 2e-7. Below ln(FLT_MIN) = -87.34 the result is 0, as flush-to-zero makes the
// subnormal true value (and exp(-inf) is 0); above 88 it is clamped to exp(88), finite.
// NaN in gives NaN out. F is float (I int32_t) or vfloat16 (I vint16): one definition for
// the scalar and the vector exp, the same operations in both.
template <typename F, typename I>
__attribute__((always_inline)) inline F exp_poly(F x) {
  const F low = F{} + -87.33654f, high = F{} + 88.0f, zero = F{};
  const auto tiny = x < low;
  x = x < low ? low : x;
  x = x > high ? high : x;
  const float magic = 12582912.0f;  // 1.5 * 2^23: adding it leaves round(x) in the low mantissa bits
  const F t = x * 1.44269504088896341f + magic;
  const I tb = bits_as<I>(t);
  const F n = t - magic;
  const F r = x - n * 0.693359375f + n * 2.12194440e-4f;
  F y = F{} + 1.9875691500e-4f;
  y = y * r + 1.3981999507e-3f;
  y = y * r + 8.3334519073e-3f;
  y = y * r + 4.1665795894e-2f;
  y = y * r + 1.6666665459e-1f;
  y = y * r + 5.0000001201e-1f;
  y = y * r * r + r + 1.0f;
  const F scale = bits_as<F>(I((tb - 0x4B400000 + 127) << 23));
  return tiny ? zero : y * scale;
}

inline float exp_f32(float x) { return exp_poly<float, int32_t>(x); }
__attribute__((always_inline)) inline vfloat16 exp16(vfloat16 x) { return exp_poly<vfloat16, vint16>(x); }

}  // namespace sublocal
