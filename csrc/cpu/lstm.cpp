// Packed variable-length LSTM on the CPU: forward and fused backward.
//
// The batch is sorted by length (descending) once per call, so the sequences still running
// at step s are always a prefix of the sorted order (PackedSequence's layout), and the saved
// workspace is packed time-major over that order: step s of the sequence ranked i is row
// offsets[s] + i. Each step's work is one contiguous block of rows, and nothing is computed
// for padding.
//
// Forward, per step: one ATen GEMM (MKL) over the active rows, [x_t | 1 | h_{t-1}] times
// [W_ih | b | W_hh]^T, gives the pre-activations with the input projection folded in; then
// the cell update, vectorised. Folding the projection into the step's GEMM (K = C + 1 + H)
// measured 26% less CPU time for the forward than one projection GEMM over all steps first
// (B=128, T=400, C=20, H=256, 1 thread): the separate pass writes the whole (N, 4H) gate
// tensor once more and reads it back from memory one step at a time.
//
// Backward, per step in reverse: the cell's gradient for the block of rows, then
// dh_{s-1} = dgates W_hh (one GEMM on the active rows). The weight and input gradients are
// not per step: [dW_ih | db | dW_hh] += dgates^T [x | 1 | h_prev] and dx = dgates W_ih are
// GEMMs over chunks of 1024 (step, sequence) rows, so they stay large matrix products while
// reading rows the step loop has just written, instead of first storing an (N, 4H) gradient
// tensor (650 MB at `paper`).
//
// Work items are (direction, tile of the sorted batch); each walks its own time loop with no
// synchronisation between steps, so with 2 threads the two directions run side by side, each
// issuing single-threaded GEMMs of the whole active batch (MKL runs sequentially inside an
// OpenMP parallel region). With more threads than directions the sorted batch is split into
// tiles of equal total length, one time loop each.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/core/LegacyTypeDispatch.h>
#include <ATen/TensorOperators.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/full.h>
#include <ATen/ops/mm.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <numeric>
#include <vector>

#include "cpu/fp_mode.h"
#include "cpu/output_cache.h"
#include "lstm.h"

// The float cell loops below are branch-free so that they vectorise; GCC only if-converts the
// clamps and selects when it may assume comparisons do not trap (torch itself is built with
// -fno-trapping-math). Placed after the includes so it applies to this file's functions only.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")
#endif

// One clone of each float cell loop per x86-64 vector width, chosen at load time (the baseline
// build alone only has SSE2).
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define SUBLOCAL_VECTOR_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define SUBLOCAL_VECTOR_CLONES
#endif

namespace sublocal {
namespace {

// ---- elementwise math -----------------------------------------------------------------------

// exp for float32 without a library call (so the loops vectorise): Cephes' expf polynomial
// after rounding x log2(e) to the nearest integer n; 2^n is built in the exponent bits.
// Relative error about 2e-7; inputs are clamped to [-87, 88] (results stay finite and normal).
inline float exp_f32(float x) {
  x = x < -87.0f ? -87.0f : x;
  x = x > 88.0f ? 88.0f : x;
  const float magic = 12582912.0f;  // 1.5 * 2^23: adding it leaves round(x) in the low mantissa bits
  const float t = x * 1.44269504088896341f + magic;
  int32_t tb;
  std::memcpy(&tb, &t, sizeof(tb));
  const float n = t - magic;
  const float r = x - n * 0.693359375f + n * 2.12194440e-4f;
  float y = 1.9875691500e-4f;
  y = y * r + 1.3981999507e-3f;
  y = y * r + 8.3334519073e-3f;
  y = y * r + 4.1665795894e-2f;
  y = y * r + 1.6666665459e-1f;
  y = y * r + 5.0000001201e-1f;
  y = y * r * r + r + 1.0f;
  const int32_t bits = (tb - 0x4B400000 + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return y * scale;
}

inline float sigmoid_f32(float x) { return 1.0f / (1.0f + exp_f32(-x)); }

// tanh: Cephes' odd polynomial below |x| = 0.625 (full relative accuracy near 0), else
// 1 - 2 / (exp(2|x|) + 1) with the sign restored.
inline float tanh_f32(float x) {
  const float ax = x < 0.0f ? -x : x;
  const float z = x * x;
  const float small =
      ((((-5.70498872745e-3f * z + 2.06390887954e-2f) * z - 5.37397155531e-2f) * z + 1.33314422036e-1f) * z -
       3.33332819422e-1f) * z * x + x;
  const float big = 1.0f - 2.0f / (exp_f32(2.0f * ax) + 1.0f);
  const float big_signed = x < 0.0f ? -big : big;
  return ax < 0.625f ? small : big_signed;
}

inline double sigmoid_f64(double x) { return 1.0 / (1.0 + std::exp(-x)); }

// ---- the cell, forward and backward, over a block of n rows ----------------------------------
// gates: (n, 4H) pre-activations in, activations i, f, g, o out. cprev: row r at cprev + r * cps.
// state: (n, 2H) rows [c | h] out.

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

SUBLOCAL_VECTOR_CLONES
void cell_fwd(int64_t n, int64_t H, float* gates, const float* cprev, int64_t cps, float* state) {
  for (int64_t r = 0; r < n; ++r) {
    float* g = gates + r * 4 * H;
    float* c = state + r * 2 * H;
    cell_fwd_row(H, g, g + H, g + 2 * H, g + 3 * H, cprev + r * cps, c, c + H,
                 [](float v) { return sigmoid_f32(v); }, [](float v) { return tanh_f32(v); });
  }
}

void cell_fwd(int64_t n, int64_t H, double* gates, const double* cprev, int64_t cps, double* state) {
  for (int64_t r = 0; r < n; ++r) {
    double* g = gates + r * 4 * H;
    double* c = state + r * 2 * H;
    cell_fwd_row(H, g, g + H, g + 2 * H, g + 3 * H, cprev + r * cps, c, c + H,
                 [](double v) { return sigmoid_f64(v); }, [](double v) { return std::tanh(v); });
  }
}

// dh: (n, H) the full gradient reaching h_s. dc: (n, H) in: gradient reaching c_s from later
// steps; out: the gradient reaching c_{s-1}. dgates: (n, 4H) gradients of the pre-activations.
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

template <typename T, typename Tanh>
__attribute__((always_inline)) inline void cell_bwd_rows(int64_t n, int64_t H, const T* act, const T* state,
                                                         const T* cprev, int64_t cps, const T* dh, T* dc, T* dgates,
                                                         Tanh tanh_fn) {
  for (int64_t r = 0; r < n; ++r) {
    const T* a = act + r * 4 * H;
    T* d = dgates + r * 4 * H;
    cell_bwd_row(H, a, a + H, a + 2 * H, a + 3 * H, state + r * 2 * H, cprev + r * cps, dh + r * H, dc + r * H, d,
                 d + H, d + 2 * H, d + 3 * H, tanh_fn);
  }
}

SUBLOCAL_VECTOR_CLONES
void cell_bwd(int64_t n, int64_t H, const float* act, const float* state, const float* cprev, int64_t cps,
              const float* dh, float* dc, float* dgates) {
  cell_bwd_rows(n, H, act, state, cprev, cps, dh, dc, dgates, [](float v) { return tanh_f32(v); });
}

void cell_bwd(int64_t n, int64_t H, const double* act, const double* state, const double* cprev, int64_t cps,
              const double* dh, double* dc, double* dgates) {
  cell_bwd_rows(n, H, act, state, cprev, cps, dh, dc, dgates, [](double v) { return std::tanh(v); });
}

// ---- the packed schedule ---------------------------------------------------------------------

struct Plan {
  std::vector<int64_t> order;      // rank -> batch index, longest first (stable)
  std::vector<int64_t> len;        // rank -> length
  std::vector<int64_t> active;     // active[s]: sequences still running at step s (a prefix of ranks)
  std::vector<int64_t> offsets;    // offsets[s]: first packed row of step s; offsets[max_len] = total
  std::vector<int64_t> tile_start; // tiles of ranks, tile k = [tile_start[k], tile_start[k + 1])
  int64_t max_len = 0, total = 0;
};

// lengths: int64 from lstm_prepare, or undefined (every sequence has length T).
Plan make_plan(const at::Tensor& lengths, int64_t batch, int64_t time, int64_t dirs, const char* op) {
  Plan p;
  const at::Tensor l = lengths.defined() ? lengths : at::full({batch}, time, at::TensorOptions().dtype(at::kLong));
  check_length_values(l, time, op);
  const int64_t* lp = l.data_ptr<int64_t>();
  p.order.resize(batch);
  std::iota(p.order.begin(), p.order.end(), int64_t(0));
  std::stable_sort(p.order.begin(), p.order.end(), [&](int64_t a, int64_t b) { return lp[a] > lp[b]; });
  p.len.resize(batch);
  for (int64_t i = 0; i < batch; ++i) p.len[i] = lp[p.order[i]];
  p.max_len = batch ? p.len[0] : 0;
  p.active.assign(p.max_len, 0);
  for (int64_t i = 0; i < batch; ++i)
    for (int64_t s = 0; s < p.len[i]; ++s) p.active[s] = i + 1;  // sorted: the last rank still running
  p.offsets.assign(p.max_len + 1, 0);
  for (int64_t s = 0; s < p.max_len; ++s) p.offsets[s + 1] = p.offsets[s] + p.active[s];
  p.total = p.offsets[p.max_len];
  // Tiles: one per direction while there are no more threads than directions (each direction
  // keeps whole-batch GEMMs); otherwise split each direction's batch into runs of equal total
  // length so every thread gets a time loop.
  const int64_t tiles = std::max<int64_t>(1, std::min<int64_t>(batch, at::get_num_threads() / dirs));
  p.tile_start.push_back(0);
  int64_t acc = 0;
  for (int64_t i = 0; i < batch; ++i) {
    acc += p.len[i];
    const int64_t k = static_cast<int64_t>(p.tile_start.size());
    if (k < tiles && acc * tiles >= k * p.total && i + 1 < batch) p.tile_start.push_back(i + 1);
  }
  p.tile_start.push_back(batch);
  return p;
}

// Time index of step s for the sequence of length L in direction d.
inline int64_t time_of(int64_t d, int64_t s, int64_t L) { return d == 0 ? s : L - 1 - s; }

// h0 / c0 of direction d in rank order, in the compute dtype (zeros when absent).
template <typename scalar_t, typename acc_t>
at::Tensor sorted_state(const at::Tensor& s0, const Plan& p, int64_t d, int64_t H, const at::TensorOptions& opts) {
  const int64_t B = static_cast<int64_t>(p.order.size());
  if (!s0.defined()) return at::zeros({B, H}, opts);
  auto out = at::empty({B, H}, opts);
  const scalar_t* src = s0.data_ptr<scalar_t>() + d * B * H;
  acc_t* dst = out.data_ptr<acc_t>();
  for (int64_t i = 0; i < B; ++i)
    for (int64_t j = 0; j < H; ++j) dst[i * H + j] = static_cast<acc_t>(src[p.order[i] * H + j]);
  return out;
}

at::Tensor acc_tensor(const at::Tensor& t, at::ScalarType acc) { return t.scalar_type() == acc ? t : t.to(acc); }

// ---- forward ---------------------------------------------------------------------------------

// [W_ih | b_ih + b_hh | W_hh]: (4H, C + has_bias + H) in the compute dtype. One GEMM per step
// with the row [x_t | 1 | h_{t-1}] gives the gates' pre-activations, projection included.
at::Tensor fused_weight(const LstmDirWeights& w, bool has_bias, at::ScalarType acc) {
  std::vector<at::Tensor> parts{acc_tensor(w.w_ih, acc)};
  if (has_bias) parts.push_back((acc_tensor(w.b_ih, acc) + acc_tensor(w.b_hh, acc)).unsqueeze(1));
  parts.push_back(acc_tensor(w.w_hh, acc));
  return at::cat(parts, 1);
}

template <typename scalar_t>
void lstm_fwd_impl(const LstmArgs& a, const Plan& p, at::Tensor& out, at::Tensor& h_n, at::Tensor& c_n,
                   at::Tensor& gates, at::Tensor& states) {
  using acc_t = at::opmath_type<scalar_t>;
  const auto& sh = a.shape;
  const int64_t B = sh.batch, T = sh.time, C = sh.input, H = sh.hidden, D = sh.dirs;
  const int64_t hb = sh.has_bias ? 1 : 0, K = C + hb + H, ho = C + hb;
  const auto acc = gates.scalar_type();
  const auto aopts = gates.options();
  at::Tensor wt[2], h0s[2], c0s[2];
  for (int64_t d = 0; d < D; ++d) {
    wt[d] = fused_weight(a.w[d], sh.has_bias, acc).t();
    h0s[d] = sorted_state<scalar_t, acc_t>(a.h0, p, d, H, aopts);
    c0s[d] = sorted_state<scalar_t, acc_t>(a.c0, p, d, H, aopts);
  }
  const int64_t ntiles = static_cast<int64_t>(p.tile_start.size()) - 1;
  const scalar_t* X = a.x.data_ptr<scalar_t>();
  scalar_t* O = out.data_ptr<scalar_t>();
  at::parallel_for(0, D * ntiles, 1, [&](int64_t begin, int64_t end) {
    const FlushDenormalGuard flush;
    // OpenMP workers do not inherit the caller's thread-local dispatch state: keep the ATen
    // calls below autograd here too (the weights may require grad).
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    for (int64_t item = begin; item < end; ++item) {
      const int64_t d = item / ntiles, i0 = p.tile_start[item % ntiles], i1 = p.tile_start[item % ntiles + 1];
      at::Tensor G = gates[d];
      acc_t* Gp = G.data_ptr<acc_t>();
      acc_t* Sp = states[d].data_ptr<acc_t>();
      // z: this tile's GEMM rows [x_t | 1 | h_{t-1}], rank i0 + r in row r.
      at::Tensor z = at::empty({i1 - i0, K}, aopts);
      acc_t* Z = z.data_ptr<acc_t>();
      for (int64_t r = 0; r < i1 - i0; ++r) {
        if (hb) Z[r * K + C] = acc_t(1);
        std::copy_n(h0s[d].data_ptr<acc_t>() + (i0 + r) * H, H, Z + r * K + ho);
      }
      for (int64_t s = 0; s < p.max_len; ++s) {
        const int64_t n = std::min(p.active[s], i1) - i0;
        if (n <= 0) break;
        for (int64_t r = 0; r < n; ++r) {
          const int64_t i = i0 + r;
          const scalar_t* src = X + (p.order[i] * T + time_of(d, s, p.len[i])) * C;
          for (int64_t k = 0; k < C; ++k) Z[r * K + k] = static_cast<acc_t>(src[k]);
        }
        const int64_t row = p.offsets[s] + i0;
        at::Tensor g = G.narrow(0, row, n);
        at::mm_out(g, z.narrow(0, 0, n), wt[d]);
        const acc_t* cprev = s == 0 ? c0s[d].data_ptr<acc_t>() + i0 * H : Sp + (p.offsets[s - 1] + i0) * 2 * H;
        cell_fwd(n, H, Gp + row * 4 * H, cprev, s == 0 ? H : 2 * H, Sp + row * 2 * H);
        for (int64_t r = 0; r < n; ++r) {
          const int64_t i = i0 + r;
          const acc_t* h = Sp + (row + r) * 2 * H + H;
          std::copy_n(h, H, Z + r * K + ho);
          scalar_t* o = O + (p.order[i] * T + time_of(d, s, p.len[i])) * D * H + d * H;
          for (int64_t j = 0; j < H; ++j) o[j] = static_cast<scalar_t>(h[j]);
        }
      }
      scalar_t* hn = h_n.data_ptr<scalar_t>() + d * B * H;
      scalar_t* cn = c_n.data_ptr<scalar_t>() + d * B * H;
      for (int64_t i = i0; i < i1; ++i) {
        const acc_t* st = Sp + (p.offsets[p.len[i] - 1] + i) * 2 * H;
        for (int64_t j = 0; j < H; ++j) {
          cn[p.order[i] * H + j] = static_cast<scalar_t>(st[j]);
          hn[p.order[i] * H + j] = static_cast<scalar_t>(st[H + j]);
        }
      }
    }
  });
  // Padded positions of the output are zero.
  at::parallel_for(0, B, 1, [&](int64_t begin, int64_t end) {
    const FlushDenormalGuard flush;
    for (int64_t i = begin; i < end; ++i) {
      scalar_t* o = O + (p.order[i] * T + p.len[i]) * D * H;
      std::fill_n(o, (T - p.len[i]) * D * H, scalar_t(0));
    }
  });
}

// Inference forward: lstm_fwd_impl's schedule and arithmetic (the same GEMM on the same rows,
// the same cell), but nothing is kept for a backward. A work item holds only its current
// step's gates, (tile rows, 4H), and the states of the previous and the current step, two
// (tile rows, 2H) buffers used in turn, instead of the (D, N, 4H) + (D, N, 2H) workspace
// (1.6 GB float32 at `paper`); each sequence's h_n and c_n are written at its last step.
// MKL's GEMM result depends on the output's address modulo 64 bytes (1-ulp differences
// measured at odd offsets), so each step's gate block starts where its rows would in the
// (64-byte aligned) workspace, and the outputs equal lstm_fwd_impl's bit for bit.
template <typename scalar_t>
void lstm_infer_impl(const LstmArgs& a, const Plan& p, at::Tensor& out, at::Tensor& h_n, at::Tensor& c_n,
                     const at::TensorOptions& aopts) {
  using acc_t = at::opmath_type<scalar_t>;
  const auto& sh = a.shape;
  const int64_t B = sh.batch, T = sh.time, C = sh.input, H = sh.hidden, D = sh.dirs;
  const int64_t hb = sh.has_bias ? 1 : 0, K = C + hb + H, ho = C + hb;
  const auto acc = c10::typeMetaToScalarType(aopts.dtype());
  at::Tensor wt[2], h0s[2], c0s[2];
  for (int64_t d = 0; d < D; ++d) {
    wt[d] = fused_weight(a.w[d], sh.has_bias, acc).t();
    h0s[d] = sorted_state<scalar_t, acc_t>(a.h0, p, d, H, aopts);
    c0s[d] = sorted_state<scalar_t, acc_t>(a.c0, p, d, H, aopts);
  }
  const int64_t ntiles = static_cast<int64_t>(p.tile_start.size()) - 1;
  const scalar_t* X = a.x.data_ptr<scalar_t>();
  scalar_t* O = out.data_ptr<scalar_t>();
  scalar_t* HN = h_n.data_ptr<scalar_t>();
  scalar_t* CN = c_n.data_ptr<scalar_t>();
  at::parallel_for(0, D * ntiles, 1, [&](int64_t begin, int64_t end) {
    const FlushDenormalGuard flush;
    // OpenMP workers do not inherit the caller's thread-local dispatch state: keep the ATen
    // calls below autograd here too (the weights may require grad).
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    for (int64_t item = begin; item < end; ++item) {
      const int64_t d = item / ntiles, i0 = p.tile_start[item % ntiles], i1 = p.tile_start[item % ntiles + 1];
      const int64_t nt = i1 - i0;
      constexpr int64_t kAlign = 64 / static_cast<int64_t>(sizeof(acc_t));
      at::Tensor z = at::empty({nt, K}, aopts), g = at::empty({nt * 4 * H + kAlign}, aopts);
      at::Tensor st = at::empty({2, nt, 2 * H}, aopts);
      acc_t* Z = z.data_ptr<acc_t>();
      acc_t* Sp = st.data_ptr<acc_t>();
      for (int64_t r = 0; r < nt; ++r) {
        if (hb) Z[r * K + C] = acc_t(1);
        std::copy_n(h0s[d].data_ptr<acc_t>() + (i0 + r) * H, H, Z + r * K + ho);
      }
      for (int64_t s = 0; s < p.max_len; ++s) {
        const int64_t n = std::min(p.active[s], i1) - i0;
        if (n <= 0) break;
        for (int64_t r = 0; r < n; ++r) {
          const int64_t i = i0 + r;
          const scalar_t* src = X + (p.order[i] * T + time_of(d, s, p.len[i])) * C;
          for (int64_t k = 0; k < C; ++k) Z[r * K + k] = static_cast<acc_t>(src[k]);
        }
        const int64_t shift = (d * p.total + p.offsets[s] + i0) * 4 * H % kAlign;
        at::Tensor gs = g.narrow(0, shift, n * 4 * H).view({n, 4 * H});
        at::mm_out(gs, z.narrow(0, 0, n), wt[d]);
        acc_t* Gp = g.data_ptr<acc_t>() + shift;
        acc_t* cur = Sp + (s % 2) * nt * 2 * H;
        const acc_t* cprev = s == 0 ? c0s[d].data_ptr<acc_t>() + i0 * H : Sp + ((s + 1) % 2) * nt * 2 * H;
        cell_fwd(n, H, Gp, cprev, s == 0 ? H : 2 * H, cur);
        for (int64_t r = 0; r < n; ++r) {
          const int64_t i = i0 + r;
          const acc_t* h = cur + r * 2 * H + H;
          std::copy_n(h, H, Z + r * K + ho);
          scalar_t* o = O + (p.order[i] * T + time_of(d, s, p.len[i])) * D * H + d * H;
          for (int64_t j = 0; j < H; ++j) o[j] = static_cast<scalar_t>(h[j]);
        }
        // Ranks [n_next, n) of the tile ran their last step now.
        const int64_t n_next = s + 1 < p.max_len ? std::max<int64_t>(std::min(p.active[s + 1], i1) - i0, 0) : 0;
        for (int64_t r = n_next; r < n; ++r) {
          const acc_t* c = cur + r * 2 * H;
          const int64_t b = p.order[i0 + r];
          for (int64_t j = 0; j < H; ++j) {
            CN[(d * B + b) * H + j] = static_cast<scalar_t>(c[j]);
            HN[(d * B + b) * H + j] = static_cast<scalar_t>(c[H + j]);
          }
        }
      }
    }
  });
  // Padded positions of the output are zero.
  at::parallel_for(0, B, 1, [&](int64_t begin, int64_t end) {
    const FlushDenormalGuard flush;
    for (int64_t i = begin; i < end; ++i) {
      scalar_t* o = O + (p.order[i] * T + p.len[i]) * D * H;
      std::fill_n(o, (T - p.len[i]) * D * H, scalar_t(0));
    }
  });
}

// Rows of (step, sequence) pairs gathered before the weight-gradient GEMM runs: 1024 rows of
// dgates are 4 MB at H=256, so each GEMM reads data the step loop has just written.
constexpr int64_t kChunkRows = 1024;

template <typename scalar_t>
void lstm_bwd_impl(const LstmArgs& a, const Plan& p, const at::Tensor& grad_out, const at::Tensor& grad_h_n,
                   const at::Tensor& grad_c_n, const at::Tensor& gates, const at::Tensor& states,
                   at::Tensor& grad_x, std::vector<at::Tensor>& grad_w, at::Tensor& grad_h0, at::Tensor& grad_c0) {
  using acc_t = at::opmath_type<scalar_t>;
  const auto& sh = a.shape;
  const int64_t B = sh.batch, T = sh.time, C = sh.input, H = sh.hidden, D = sh.dirs;
  const int64_t hb = sh.has_bias ? 1 : 0, K = C + hb + H, ho = C + hb;
  const auto acc = gates.scalar_type();
  const auto aopts = gates.options();
  const int64_t ntiles = static_cast<int64_t>(p.tile_start.size()) - 1;
  auto dh = at::empty({D, B, H}, aopts);  // gradient reaching h_s, rank order
  auto dc = at::empty({D, B, H}, aopts);  // gradient reaching c_s, rank order
  auto dw = at::zeros({D * ntiles, 4 * H, K}, aopts);  // [dW_ih | db | dW_hh] per item
  auto dx = cpu_output({D, B, T, C}, aopts).zero_();  // per direction; zero at padding
  at::Tensor whh[2], wih[2], h0s[2], c0s[2];
  for (int64_t d = 0; d < D; ++d) {
    whh[d] = acc_tensor(a.w[d].w_hh, acc);
    wih[d] = acc_tensor(a.w[d].w_ih, acc);
    h0s[d] = sorted_state<scalar_t, acc_t>(a.h0, p, d, H, aopts);
    c0s[d] = sorted_state<scalar_t, acc_t>(a.c0, p, d, H, aopts);
  }
  const scalar_t* X = a.x.data_ptr<scalar_t>();
  const scalar_t* dO = grad_out.data_ptr<scalar_t>();
  const scalar_t* dHn = grad_h_n.data_ptr<scalar_t>();
  const scalar_t* dCn = grad_c_n.data_ptr<scalar_t>();
  at::parallel_for(0, D * ntiles, 1, [&](int64_t begin, int64_t end) {
    const FlushDenormalGuard flush;
    // OpenMP workers do not inherit the caller's thread-local dispatch state: keep the ATen
    // calls below autograd here too (the weights may require grad).
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    for (int64_t item = begin; item < end; ++item) {
      const int64_t d = item / ntiles, i0 = p.tile_start[item % ntiles], i1 = p.tile_start[item % ntiles + 1];
      const int64_t nt = i1 - i0, cap = kChunkRows + nt;
      const acc_t* Gp = gates[d].data_ptr<acc_t>();
      const acc_t* Sp = states[d].data_ptr<acc_t>();
      at::Tensor dhd = dh[d], dwi = dw[item];
      acc_t* dhp = dhd.data_ptr<acc_t>();
      acc_t* dcp = dc[d].data_ptr<acc_t>();
      acc_t* dxp = dx[d].data_ptr<acc_t>();
      // A chunk of steps: dgates rows, the matching [x | 1 | h_prev] rows, and where each row's
      // dx goes (flat (b, t) index).
      at::Tensor dg = cpu_output({cap, 4 * H}, aopts), z = at::empty({cap, K}, aopts), dxc = at::empty({cap, C}, aopts);
      acc_t* dG = dg.data_ptr<acc_t>();
      acc_t* Z = z.data_ptr<acc_t>();
      std::vector<int64_t> where(cap);
      int64_t rows = 0, prev_n = 0;
      for (int64_t s = p.len[i0] - 1; s >= 0; --s) {
        const int64_t n = std::min(p.active[s], i1) - i0;
        // Sequences whose last step is s start here, from the gradients of h_n and c_n.
        for (int64_t r = prev_n; r < n; ++r) {
          const int64_t b = p.order[i0 + r];
          for (int64_t j = 0; j < H; ++j) {
            dhp[(i0 + r) * H + j] = static_cast<acc_t>(dHn[(d * B + b) * H + j]);
            dcp[(i0 + r) * H + j] = static_cast<acc_t>(dCn[(d * B + b) * H + j]);
          }
        }
        prev_n = n;
        const int64_t row = p.offsets[s] + i0;
        for (int64_t r = 0; r < n; ++r) {
          const int64_t i = i0 + r, bt = p.order[i] * T + time_of(d, s, p.len[i]);
          const scalar_t* g = dO + bt * D * H + d * H;
          acc_t* dst = dhp + i * H;
          for (int64_t j = 0; j < H; ++j) dst[j] += static_cast<acc_t>(g[j]);
          acc_t* zr = Z + (rows + r) * K;
          const scalar_t* xr = X + bt * C;
          for (int64_t k = 0; k < C; ++k) zr[k] = static_cast<acc_t>(xr[k]);
          if (hb) zr[C] = acc_t(1);
          const acc_t* hp = s == 0 ? h0s[d].data_ptr<acc_t>() + i * H : Sp + (p.offsets[s - 1] + i) * 2 * H + H;
          std::copy_n(hp, H, zr + ho);
          where[rows + r] = bt;
        }
        const acc_t* cprev = s == 0 ? c0s[d].data_ptr<acc_t>() + i0 * H : Sp + (p.offsets[s - 1] + i0) * 2 * H;
        cell_bwd(n, H, Gp + row * 4 * H, Sp + row * 2 * H, cprev, s == 0 ? H : 2 * H, dhp + i0 * H, dcp + i0 * H,
                 dG + rows * 4 * H);
        at::Tensor dh_rows = dhd.narrow(0, i0, n);
        at::mm_out(dh_rows, dg.narrow(0, rows, n), whh[d]);
        rows += n;
        if (rows >= kChunkRows || s == 0) {
          const at::Tensor dgc = dg.narrow(0, 0, rows);
          dwi.addmm_(dgc.t(), z.narrow(0, 0, rows));
          at::Tensor dxr = dxc.narrow(0, 0, rows);
          at::mm_out(dxr, dgc, wih[d]);
          const acc_t* src = dxc.data_ptr<acc_t>();
          for (int64_t q = 0; q < rows; ++q) std::copy_n(src + q * C, C, dxp + where[q] * C);
          rows = 0;
        }
      }
    }
  });
  const int64_t per = sh.has_bias ? 4 : 2;
  const auto out_dtype = a.x.scalar_type();
  for (int64_t d = 0; d < D; ++d) {
    const at::Tensor m = dw.narrow(0, d * ntiles, ntiles).sum(0);
    grad_w[d * per] = m.narrow(1, 0, C).to(out_dtype).contiguous();
    grad_w[d * per + 1] = m.narrow(1, ho, H).to(out_dtype).contiguous();
    if (sh.has_bias) {
      grad_w[d * per + 2] = m.select(1, C).to(out_dtype).contiguous();
      grad_w[d * per + 3] = grad_w[d * per + 2].clone();
    }
    const acc_t* dhd = dh[d].data_ptr<acc_t>();
    const acc_t* dcd = dc[d].data_ptr<acc_t>();
    scalar_t* gh0 = grad_h0.data_ptr<scalar_t>() + d * B * H;
    scalar_t* gc0 = grad_c0.data_ptr<scalar_t>() + d * B * H;
    for (int64_t i = 0; i < B; ++i) {
      for (int64_t j = 0; j < H; ++j) {
        gh0[p.order[i] * H + j] = static_cast<scalar_t>(dhd[i * H + j]);
        gc0[p.order[i] * H + j] = static_cast<scalar_t>(dcd[i * H + j]);
      }
    }
  }
  grad_x.copy_(D == 2 ? dx[0] + dx[1] : dx[0]);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> lstm_fwd_cpu(
    const at::Tensor& x, const std::optional<at::Tensor>& lengths, at::TensorList weights, const std::optional<at::Tensor>& h0,
    const std::optional<at::Tensor>& c0, bool bidirectional) {
  const char* op = "sublocal::lstm_fwd";
  const LstmArgs a = lstm_prepare(x, lengths, weights, h0, c0, bidirectional, op);
  const auto& sh = a.shape;
  const int64_t B = sh.batch, T = sh.time, H = sh.hidden, D = sh.dirs;
  const Plan p = make_plan(a.lengths, B, T, D, op);
  auto opts = a.x.options();
  auto aopts = opts.dtype(state_dtype(a.x.scalar_type()));
  auto out = cpu_output({B, T, D * H}, opts);
  auto h_n = at::empty({D, B, H}, opts);
  auto c_n = at::empty({D, B, H}, opts);
  // One row per valid step (the fake kernel gives the row count a data-dependent size).
  auto gates = cpu_output({D, p.total, 4 * H}, aopts);
  auto states = cpu_output({D, p.total, 2 * H}, aopts);
  if (B == 0) return {out, h_n, c_n, gates, states};
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, a.x.scalar_type(), "lstm_fwd_cpu", [&] {
    lstm_fwd_impl<scalar_t>(a, p, out, h_n, c_n, gates, states);
  });
  return {out, h_n, c_n, gates, states};
}

// The forward without the workspace, for when no gradient is needed (sublocal::lstm_infer).
std::tuple<at::Tensor, at::Tensor, at::Tensor> lstm_infer_cpu(const at::Tensor& x,
                                                              const std::optional<at::Tensor>& lengths,
                                                              at::TensorList weights,
                                                              const std::optional<at::Tensor>& h0,
                                                              const std::optional<at::Tensor>& c0, bool bidirectional) {
  const char* op = "sublocal::lstm_infer";
  const LstmArgs a = lstm_prepare(x, lengths, weights, h0, c0, bidirectional, op);
  const auto& sh = a.shape;
  const int64_t B = sh.batch, T = sh.time, H = sh.hidden, D = sh.dirs;
  const Plan p = make_plan(a.lengths, B, T, D, op);
  auto opts = a.x.options();
  auto out = cpu_output({B, T, D * H}, opts);
  auto h_n = at::empty({D, B, H}, opts);
  auto c_n = at::empty({D, B, H}, opts);
  if (B == 0) return {out, h_n, c_n};
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, a.x.scalar_type(), "lstm_infer_cpu", [&] {
    lstm_infer_impl<scalar_t>(a, p, out, h_n, c_n, opts.dtype(state_dtype(a.x.scalar_type())));
  });
  return {out, h_n, c_n};
}

// ---- backward --------------------------------------------------------------------------------

std::tuple<at::Tensor, std::vector<at::Tensor>, at::Tensor, at::Tensor> lstm_bwd_cpu(
    const at::Tensor& grad_out, const at::Tensor& grad_h_n, const at::Tensor& grad_c_n, const at::Tensor& x,
    const std::optional<at::Tensor>& lengths, at::TensorList weights, const std::optional<at::Tensor>& h0,
    const std::optional<at::Tensor>& c0, const at::Tensor& gates, const at::Tensor& states, bool bidirectional) {
  const char* op = "sublocal::lstm_bwd";
  const LstmArgs a = lstm_prepare(x, lengths, weights, h0, c0, bidirectional, op);
  const auto& sh = a.shape;
  const int64_t B = sh.batch, T = sh.time, H = sh.hidden, D = sh.dirs;
  check_like(grad_out, x, op, "grad_out", "x");
  check_shape(grad_out, {B, T, D * H}, op, "grad_out");
  check_like(grad_h_n, x, op, "grad_h_n", "x");
  check_shape(grad_h_n, {D, B, H}, op, "grad_h_n");
  check_like(grad_c_n, x, op, "grad_c_n", "x");
  check_shape(grad_c_n, {D, B, H}, op, "grad_c_n");
  const Plan p = make_plan(a.lengths, B, T, D, op);
  lstm_check_workspace(gates, states, sh, p.total, x, op);
  auto opts = a.x.options();
  auto grad_x = cpu_output({B, T, sh.input}, opts);
  std::vector<at::Tensor> grad_w(weights.size());
  for (size_t k = 0; k < weights.size(); ++k) grad_w[k] = at::zeros(weights[k].sizes(), opts);
  auto grad_h0 = at::empty({D, B, H}, opts);
  auto grad_c0 = at::empty({D, B, H}, opts);
  if (B == 0) return {grad_x, grad_w, grad_h0, grad_c0};
  const at::Tensor go = grad_out.contiguous(), ghn = grad_h_n.contiguous(), gcn = grad_c_n.contiguous();
  const at::Tensor gw = gates.contiguous(), st = states.contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, a.x.scalar_type(), "lstm_bwd_cpu", [&] {
    lstm_bwd_impl<scalar_t>(a, p, go, ghn, gcn, gw, st, grad_x, grad_w, grad_h0, grad_c0);
  });
  return {grad_x, grad_w, grad_h0, grad_c0};
}

}  // namespace

TORCH_LIBRARY_IMPL(sublocal, CPU, m) {
  m.impl("lstm_fwd", &lstm_fwd_cpu);
  m.impl("lstm_bwd", &lstm_bwd_cpu);
  m.impl("lstm_infer", &lstm_infer_cpu);
}

}  // namespace sublocal
