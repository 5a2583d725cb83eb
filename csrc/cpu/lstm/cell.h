// The recurrent cells of the CPU LSTM family: the elementwise math of one step over a block of
// rows, forward and backward, shared by the standard LSTM and the multiplicative one (mLSTM).
//
//   LSTM:  [i f g o] = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh
//   mLSTM: m_t = (W_mx x_t) * (W_mh h_{t-1});  [i f g o] = W_ih x_t + b_ih + W_hh m_t + b_hh
//   both:  c_t = f c_{t-1} + i g,  h_t = o tanh(c_t)  (sigmoid i, f, o; tanh g)
//
// The two cells differ only in how the pre-activations are projected (forward.cpp,
// backward.cpp: behind `if constexpr (Cell::kMultiplicative)`) and in the m product below; the
// gate update itself is one code path.
//
// Row layouts (the workspace of csrc/lstm.h, one row per valid step):
//   gates:  LSTM 4H = [i f g o],  mLSTM 5H = [i f g o | mx = W_mx x_t]
//   states: LSTM 2H = [c | h],    mLSTM 3H = [c | h | mh = W_mh h_{t-1}]
// The gate functions take the pre-activations in the first 4H of a gates row and leave the
// activations there.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>

// last: its no-trapping-math pragma applies to the including file's functions only
#include "cpu/vec_math.h"

namespace sublocal::lstm_cpu {

struct LstmCell {
  static constexpr bool kMultiplicative = false;
  static constexpr int64_t kGateCols = 4, kStateCols = 2;  // in units of H
  static constexpr const char* kName = "lstm";
};

struct MlstmCell {
  static constexpr bool kMultiplicative = true;
  static constexpr int64_t kGateCols = 5, kStateCols = 3;
  static constexpr const char* kName = "mlstm";
};

// ---- elementwise math -----------------------------------------------------------------------
// always_inline: the vector clones of the cell loops must inline these (as the bits_as of
// vec_math.h); an out-of-line call is the baseline ISA's scalar code, and the loop no longer
// vectorises (an inline function with external linkage is not inlined as readily as the
// file-local ones these once were: the cell's tail then rounded differently).

__attribute__((always_inline)) inline float sigmoid_f32(float x) { return 1.0f / (1.0f + exp_f32(-x)); }

// tanh: Cephes' odd polynomial below |x| = 0.625 (full relative accuracy near 0), else
// 1 - 2 / (exp(2|x|) + 1) with the sign restored.
__attribute__((always_inline)) inline float tanh_f32(float x) {
  const float ax = x < 0.0f ? -x : x;
  const float z = x * x;
  const float small =
      ((((-5.70498872745e-3f * z + 2.06390887954e-2f) * z - 5.37397155531e-2f) * z + 1.33314422036e-1f) * z -
       3.33332819422e-1f) * z * x + x;
  const float big = 1.0f - 2.0f / (exp_f32(2.0f * ax) + 1.0f);
  const float big_signed = x < 0.0f ? -big : big;
  return ax < 0.625f ? small : big_signed;
}

__attribute__((always_inline)) inline double sigmoid_f64(double x) { return 1.0 / (1.0 + std::exp(-x)); }

// The cell's activation functions of the compute dtype: float32 vectorisable, float64 libm.
template <typename T>
struct Act;
template <>
struct Act<float> {
  __attribute__((always_inline)) static float sigmoid(float v) { return sigmoid_f32(v); }
  __attribute__((always_inline)) static float tanh(float v) { return tanh_f32(v); }
};
template <>
struct Act<double> {
  __attribute__((always_inline)) static double sigmoid(double v) { return sigmoid_f64(v); }
  __attribute__((always_inline)) static double tanh(double v) { return std::tanh(v); }
};

// ---- forward --------------------------------------------------------------------------------

// One row of the cell. Every pointer is a distinct row or row segment; the __restrict
// parameters (kept through always_inline into each vector clone) let GCC vectorise the loop
// without alias checks, which it otherwise gives up on ("complicated access pattern").
template <typename T, typename Sigmoid, typename Tanh>
__attribute__((always_inline)) inline void cell_fwd_row(int64_t H, T* __restrict gi, T* __restrict gf,
                                                        T* __restrict gg, T* __restrict go, const T* __restrict cp,
                                                        T* __restrict c, T* __restrict h, Sigmoid sigmoid_fn,
                                                        Tanh tanh_fn) {
  for (int64_t j = 0; j < H; ++j) {
    const T i = sigmoid_fn(gi[j]), f = sigmoid_fn(gf[j]), g = tanh_fn(gg[j]), o = sigmoid_fn(go[j]);
    const T cj = f * cp[j] + i * g;
    gi[j] = i;
    gf[j] = f;
    gg[j] = g;
    go[j] = o;
    c[j] = cj;
    h[j] = o * tanh_fn(cj);
  }
}

// Small H (the CNN-LSTM's 15 units): a loop over one row's H units has few or no full 16-lane
// vectors, and the cell ran nearly all scalar (35% of a bidirectional LSTM's inference at
// B=128, T=1000, C=20, H=15 in perf, 4 transcendental functions per unit). The LSTM's gate
// rows are contiguous (gs = 4H), so the activations go over the whole (n, 4H) block instead,
// 16H elements at a time (4 rows: whole vectors for any H), every element through both
// functions and a select by its gate. The state update, one tanh per unit, stays per row.
// The values agree with the per-row loop's to float32 rounding, not bit for bit (that loop's
// scalar tail contracts its multiply-adds differently from the vector code). Measured: that
// inference 39.0-41.5 ms -> 30.2-31.7 ms (three interleaved pairs of processes, 2 threads).
constexpr int64_t kFlatGatesBelow = 32;

__attribute__((always_inline)) inline void activate_gates_flat(int64_t n, int64_t H, float* __restrict gates) {
  int32_t is_g[16 * kFlatGatesBelow];
  const int64_t period = 16 * H, total = n * 4 * H;
  for (int64_t k = 0; k < period; ++k) is_g[k] = (k % (4 * H)) / H == 2;
  for (int64_t q0 = 0; q0 < total; q0 += period) {
    float* __restrict x = gates + q0;
    const int64_t m = std::min(period, total - q0);
    for (int64_t k = 0; k < m; ++k) {
      const float v = x[k];
      const float sg = sigmoid_f32(v), th = tanh_f32(v);
      x[k] = is_g[k] != 0 ? th : sg;
    }
  }
}

template <typename T, typename Tanh>
__attribute__((always_inline)) inline void cell_state_row(int64_t H, const T* __restrict i_, const T* __restrict f_,
                                                          const T* __restrict g_, const T* __restrict o_,
                                                          const T* __restrict cp, T* __restrict c, T* __restrict h,
                                                          Tanh tanh_fn) {
  for (int64_t j = 0; j < H; ++j) {
    const T cj = f_[j] * cp[j] + i_[j] * g_[j];
    c[j] = cj;
    h[j] = o_[j] * tanh_fn(cj);
  }
}

// The cell over n rows and hidden units [j0, j0 + nj) (all of them: j0 = 0, nj = H; a slice in
// the mLSTM's units schedule): gates row r at gates + r * gs (gate k of unit j at k * H + j),
// c_{t-1} row r at cprev + r * cps, and the state row r (stride ss) gets [c | h]. Each
// translation unit wraps it in its own vector clones (forward.cpp).
template <typename T>
__attribute__((always_inline)) inline void cell_fwd_block(int64_t n, int64_t H, int64_t j0, int64_t nj, T* gates,
                                                          int64_t gs, const T* cprev, int64_t cps, T* state,
                                                          int64_t ss) {
  if constexpr (std::is_same_v<T, float>) {
    if (nj == H && gs == 4 * H && H < kFlatGatesBelow && H % 16 != 0) {
      activate_gates_flat(n, H, gates);
      for (int64_t r = 0; r < n; ++r) {
        const float* g = gates + r * gs;
        float* c = state + r * ss;
        cell_state_row(H, g, g + H, g + 2 * H, g + 3 * H, cprev + r * cps, c, c + H,
                       [](float v) { return Act<float>::tanh(v); });
      }
      return;
    }
  }
  for (int64_t r = 0; r < n; ++r) {
    T* g = gates + r * gs + j0;
    T* c = state + r * ss + j0;
    cell_fwd_row(nj, g, g + H, g + 2 * H, g + 3 * H, cprev + r * cps + j0, c, c + H,
                 [](T v) { return Act<T>::sigmoid(v); }, [](T v) { return Act<T>::tanh(v); });
  }
}

// mLSTM: m = mx * mh for n rows, units [j0, j1) (strides in elements).
template <typename T>
inline void mlstm_product(int64_t n, int64_t j0, int64_t j1, const T* mx, int64_t mxs, const T* mh, int64_t mhs, T* m,
                          int64_t ms) {
  for (int64_t r = 0; r < n; ++r)
    for (int64_t j = j0; j < j1; ++j) m[r * ms + j] = mx[r * mxs + j] * mh[r * mhs + j];
}

// ---- backward -------------------------------------------------------------------------------

// dh: (n, H) the full gradient reaching h_s. dc: (n, H) in: gradient reaching c_s from later
// steps; out: the gradient reaching c_{s-1}. dgates: n rows (stride dgs) whose first 4H get the
// gradients of the pre-activations. act, state: the forward's rows (strides as, ss).
//   dc_s = dc + dh o (1 - tanh^2 c_s);  di = dc_s g;  df = dc_s c_{s-1};  dg = dc_s i;
//   do = dh tanh c_s;  through the activations: i(1-i), f(1-f), 1-g^2, o(1-o);  dc <- dc_s f.
template <typename T, typename Tanh>
__attribute__((always_inline)) inline void cell_bwd_row(int64_t H, const T* __restrict ai, const T* __restrict af,
                                                        const T* __restrict ag, const T* __restrict ao,
                                                        const T* __restrict c, const T* __restrict cp,
                                                        const T* __restrict dh, T* __restrict dc, T* __restrict di,
                                                        T* __restrict df, T* __restrict dg, T* __restrict dout,
                                                        Tanh tanh_fn) {
  for (int64_t j = 0; j < H; ++j) {
    const T i = ai[j], f = af[j], g = ag[j], o = ao[j];
    const T tc = tanh_fn(c[j]);
    const T dcs = dc[j] + dh[j] * o * (T(1) - tc * tc);
    di[j] = dcs * g * i * (T(1) - i);
    df[j] = dcs * cp[j] * f * (T(1) - f);
    dg[j] = dcs * i * (T(1) - g * g);
    dout[j] = dh[j] * tc * o * (T(1) - o);
    dc[j] = dcs * f;
  }
}

// The cell's backward over n rows and units [j0, j0 + nj): act, state, cprev as the forward's
// rows; dh and dc rows of stride H.
template <typename T>
__attribute__((always_inline)) inline void cell_bwd_block(int64_t n, int64_t H, int64_t j0, int64_t nj, const T* act,
                                                          int64_t as, const T* state, int64_t ss, const T* cprev,
                                                          int64_t cps, const T* dh, T* dc, T* dgates, int64_t dgs) {
  for (int64_t r = 0; r < n; ++r) {
    const T* a = act + r * as + j0;
    T* d = dgates + r * dgs + j0;
    cell_bwd_row(nj, a, a + H, a + 2 * H, a + 3 * H, state + r * ss + j0, cprev + r * cps + j0, dh + r * H + j0,
                 dc + r * H + j0, d, d + H, d + 2 * H, d + 3 * H, [](T v) { return Act<T>::tanh(v); });
  }
}

// mLSTM, through m = mx * mh for n rows and units [j0, j1): from dm (row stride H), the gradients
// dmx (into the dgates rows' last H, stride dgs), dmh (stride H), and m itself for the weight
// gradient of W_hh (stride H). mx, mh: the forward's rows (strides mxs, mhs).
template <typename T>
inline void mlstm_product_bwd(int64_t n, int64_t H, int64_t j0, int64_t j1, const T* dm, const T* mx, int64_t mxs,
                              const T* mh, int64_t mhs, T* dgates, int64_t dgs, T* dmh, T* m) {
  for (int64_t r = 0; r < n; ++r) {
    for (int64_t j = j0; j < j1; ++j) {
      const T v = dm[r * H + j], x_ = mx[r * mxs + j], h_ = mh[r * mhs + j];
      dgates[r * dgs + 4 * H + j] = v * h_;
      dmh[r * H + j] = v * x_;
      m[r * H + j] = x_ * h_;
    }
  }
}

}  // namespace sublocal::lstm_cpu
