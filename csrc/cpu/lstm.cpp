// Packed variable-length LSTM on the CPU: forward and fused backward, for the standard cell and
// the multiplicative one (mLSTM, at the end of the file).
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
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <mutex>
#include <numeric>
#include <utility>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "cpu/fp_mode.h"
#include "cpu/output_cache.h"
#include "lstm.h"
// last: its no-trapping-math pragma applies to this file's functions only
#include "cpu/vec_math.h"

namespace sublocal {
namespace {

// ---- elementwise math -----------------------------------------------------------------------

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
// gates: n rows (row r at gates + r * gs, LSTM gs = 4H, mLSTM 5H), the pre-activations in the
// first 4H, activations i, f, g, o out. cprev: row r at cprev + r * cps. state: n rows
// (row stride ss, LSTM 2H, mLSTM 3H) whose first 2H get [c | h].

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

SUBLOCAL_VECTOR_CLONES
void cell_fwd(int64_t n, int64_t H, float* gates, int64_t gs, const float* cprev, int64_t cps, float* state,
              int64_t ss) {
  if (gs == 4 * H && H < kFlatGatesBelow && H % 16 != 0) {
    activate_gates_flat(n, H, gates);
    for (int64_t r = 0; r < n; ++r) {
      const float* g = gates + r * gs;
      float* c = state + r * ss;
      cell_state_row(H, g, g + H, g + 2 * H, g + 3 * H, cprev + r * cps, c, c + H,
                     [](float v) { return tanh_f32(v); });
    }
    return;
  }
  for (int64_t r = 0; r < n; ++r) {
    float* g = gates + r * gs;
    float* c = state + r * ss;
    cell_fwd_row(H, g, g + H, g + 2 * H, g + 3 * H, cprev + r * cps, c, c + H,
                 [](float v) { return sigmoid_f32(v); }, [](float v) { return tanh_f32(v); });
  }
}

void cell_fwd(int64_t n, int64_t H, double* gates, int64_t gs, const double* cprev, int64_t cps, double* state,
              int64_t ss) {
  for (int64_t r = 0; r < n; ++r) {
    double* g = gates + r * gs;
    double* c = state + r * ss;
    cell_fwd_row(H, g, g + H, g + 2 * H, g + 3 * H, cprev + r * cps, c, c + H,
                 [](double v) { return sigmoid_f64(v); }, [](double v) { return std::tanh(v); });
  }
}

// The cell over hidden units [j0, j0 + nj) only (the units schedule of the mLSTM): the rows'
// layouts are cell_fwd's (gate k of unit j at gates[r * gs + k * H + j]).
SUBLOCAL_VECTOR_CLONES
void cell_fwd_units(int64_t n, int64_t H, int64_t j0, int64_t nj, float* gates, int64_t gs, const float* cprev,
                    int64_t cps, float* state, int64_t ss) {
  for (int64_t r = 0; r < n; ++r) {
    float* g = gates + r * gs + j0;
    float* c = state + r * ss + j0;
    cell_fwd_row(nj, g, g + H, g + 2 * H, g + 3 * H, cprev + r * cps + j0, c, c + H,
                 [](float v) { return sigmoid_f32(v); }, [](float v) { return tanh_f32(v); });
  }
}

void cell_fwd_units(int64_t n, int64_t H, int64_t j0, int64_t nj, double* gates, int64_t gs, const double* cprev,
                    int64_t cps, double* state, int64_t ss) {
  for (int64_t r = 0; r < n; ++r) {
    double* g = gates + r * gs + j0;
    double* c = state + r * ss + j0;
    cell_fwd_row(nj, g, g + H, g + 2 * H, g + 3 * H, cprev + r * cps + j0, c, c + H,
                 [](double v) { return sigmoid_f64(v); }, [](double v) { return std::tanh(v); });
  }
}

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

template <typename T, typename Tanh>
__attribute__((always_inline)) inline void cell_bwd_rows(int64_t n, int64_t H, const T* act, int64_t as,
                                                         const T* state, int64_t ss, const T* cprev, int64_t cps,
                                                         const T* dh, T* dc, T* dgates, int64_t dgs, Tanh tanh_fn) {
  for (int64_t r = 0; r < n; ++r) {
    const T* a = act + r * as;
    T* d = dgates + r * dgs;
    cell_bwd_row(H, a, a + H, a + 2 * H, a + 3 * H, state + r * ss, cprev + r * cps, dh + r * H, dc + r * H, d,
                 d + H, d + 2 * H, d + 3 * H, tanh_fn);
  }
}

// The cell's backward over hidden units [j0, j0 + nj) only (the units schedule): the layouts are
// cell_bwd_rows', dh and dc rows of stride H.
template <typename T, typename Tanh>
__attribute__((always_inline)) inline void cell_bwd_unit_rows(int64_t n, int64_t H, int64_t j0, int64_t nj,
                                                              const T* act, int64_t as, const T* state, int64_t ss,
                                                              const T* cprev, int64_t cps, const T* dh, T* dc,
                                                              T* dgates, int64_t dgs, Tanh tanh_fn) {
  for (int64_t r = 0; r < n; ++r) {
    const T* a = act + r * as + j0;
    T* d = dgates + r * dgs + j0;
    cell_bwd_row(nj, a, a + H, a + 2 * H, a + 3 * H, state + r * ss + j0, cprev + r * cps + j0, dh + r * H + j0,
                 dc + r * H + j0, d, d + H, d + 2 * H, d + 3 * H, tanh_fn);
  }
}

SUBLOCAL_VECTOR_CLONES
void cell_bwd_units(int64_t n, int64_t H, int64_t j0, int64_t nj, const float* act, int64_t as, const float* state,
                    int64_t ss, const float* cprev, int64_t cps, const float* dh, float* dc, float* dgates, int64_t dgs) {
  cell_bwd_unit_rows(n, H, j0, nj, act, as, state, ss, cprev, cps, dh, dc, dgates, dgs,
                     [](float v) { return tanh_f32(v); });
}

void cell_bwd_units(int64_t n, int64_t H, int64_t j0, int64_t nj, const double* act, int64_t as, const double* state,
                    int64_t ss, const double* cprev, int64_t cps, const double* dh, double* dc, double* dgates,
                    int64_t dgs) {
  cell_bwd_unit_rows(n, H, j0, nj, act, as, state, ss, cprev, cps, dh, dc, dgates, dgs,
                     [](double v) { return std::tanh(v); });
}

SUBLOCAL_VECTOR_CLONES
void cell_bwd(int64_t n, int64_t H, const float* act, int64_t as, const float* state, int64_t ss, const float* cprev,
              int64_t cps, const float* dh, float* dc, float* dgates, int64_t dgs) {
  cell_bwd_rows(n, H, act, as, state, ss, cprev, cps, dh, dc, dgates, dgs, [](float v) { return tanh_f32(v); });
}

void cell_bwd(int64_t n, int64_t H, const double* act, int64_t as, const double* state, int64_t ss,
              const double* cprev, int64_t cps, const double* dh, double* dc, double* dgates, int64_t dgs) {
  cell_bwd_rows(n, H, act, as, state, ss, cprev, cps, dh, dc, dgates, dgs, [](double v) { return std::tanh(v); });
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

// Inference with a mean pool: adds the H hidden values h of sequence b (direction d of D) to its
// float64 running sums in pool (B, D H); nothing when pool is null.
template <typename T>
inline void add_to_pool(double* pool, int64_t b, int64_t d, int64_t D, int64_t H, const T* h) {
  if (pool == nullptr) return;
  double* acc = pool + (b * D + d) * H;
  for (int64_t j = 0; j < H; ++j) acc[j] += static_cast<double>(h[j]);
}

// The positions of the (B, T, width) output `out` at or past each sequence's length are zero
// (nothing when `out` is null: no sequence output was asked for).
template <typename scalar_t>
void zero_padding(scalar_t* out, const Plan& p, int64_t T, int64_t width) {
  if (out == nullptr) return;
  at::parallel_for(0, static_cast<int64_t>(p.order.size()), 1, [&](int64_t begin, int64_t end) {
    const FlushDenormalGuard flush;
    for (int64_t i = begin; i < end; ++i)
      std::fill_n(out + (p.order[i] * T + p.len[i]) * width, (T - p.len[i]) * width, scalar_t(0));
  });
}

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
  scalar_t* O = out.dim() == 3 ? out.data_ptr<scalar_t>() : nullptr;  // null: no sequence output
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
        cell_fwd(n, H, Gp + row * 4 * H, 4 * H, cprev, s == 0 ? H : 2 * H, Sp + row * 2 * H, 2 * H);
        for (int64_t r = 0; r < n; ++r) {
          const int64_t i = i0 + r;
          const acc_t* h = Sp + (row + r) * 2 * H + H;
          std::copy_n(h, H, Z + r * K + ho);
          if (O == nullptr) continue;
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
  zero_padding(O, p, T, D * H);
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
void lstm_infer_impl(const LstmArgs& a, const Plan& p, at::Tensor& out, double* pool, at::Tensor& h_n,
                     at::Tensor& c_n, const at::TensorOptions& aopts) {
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
  scalar_t* O = out.dim() == 3 ? out.data_ptr<scalar_t>() : nullptr;  // null: no sequence output
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
        cell_fwd(n, H, Gp, 4 * H, cprev, s == 0 ? H : 2 * H, cur, 2 * H);
        for (int64_t r = 0; r < n; ++r) {
          const int64_t i = i0 + r;
          const acc_t* h = cur + r * 2 * H + H;
          std::copy_n(h, H, Z + r * K + ho);
          add_to_pool(pool, p.order[i], d, D, H, h);
          if (O == nullptr) continue;
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
  zero_padding(O, p, T, D * H);
}

// Rows of (step, sequence) pairs gathered before the weight-gradient GEMM runs: 1024 rows of
// dgates are 4 MB at H=256, so each GEMM reads data the step loop has just written.
constexpr int64_t kChunkRows = 1024;

// grad_x from the per-direction input gradients dx (D, B, T, C), in parallel over sequences:
// the sum over directions at valid steps, zero at padding. Every valid (b, t) row of each
// direction's dx is written by its time loop, and its padding rows are neither written nor
// read, so dx is not zero-filled first. (Filling it, then dx[0] + dx[1] into a temporary and
// a copy into grad_x, touched 4 fresh (B, T, C) buffers: 28 ms of the CNN-LSTM's 110 ms
// training step at `paper`, B=128, T=1000, C=20, in the zero fill alone.) Same bits as before:
// the same sum per element, in acc_t, cast once.
template <typename scalar_t, typename acc_t>
void gather_input_grad(const at::Tensor& dx, const Plan& p, int64_t T, int64_t C, int64_t D, at::Tensor& grad_x) {
  const acc_t* d0 = dx.data_ptr<acc_t>();
  const acc_t* d1 = D == 2 ? d0 + dx.stride(0) : nullptr;
  scalar_t* g = grad_x.data_ptr<scalar_t>();
  at::parallel_for(0, static_cast<int64_t>(p.order.size()), 1, [&](int64_t begin, int64_t end) {
    const FlushDenormalGuard flush;
    for (int64_t i = begin; i < end; ++i) {
      const int64_t b = p.order[i], valid = p.len[i] * C, base = b * T * C;
      if (d1 != nullptr) {
        for (int64_t k = 0; k < valid; ++k) g[base + k] = static_cast<scalar_t>(d0[base + k] + d1[base + k]);
      } else {
        for (int64_t k = 0; k < valid; ++k) g[base + k] = static_cast<scalar_t>(d0[base + k]);
      }
      std::fill_n(g + base + valid, T * C - valid, scalar_t(0));
    }
  });
}

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
  // [dW_ih | db | dW_hh]^T per item, (K, 4H): the chunk GEMM below is dW^T += z^T dgates, which
  // MKL ran 13-26% faster than dW += dgates^T z (1024-4096 rows, H=256, C=60, one thread, the
  // 2-core EPYC: 8.5 vs 9.8 ms at 1024 rows); the sum over rows is the same, its order MKL's.
  auto dw = at::zeros({D * ntiles, K, 4 * H}, aopts);
  auto dx = cpu_output({D, B, T, C}, aopts);  // per direction; padding rows unwritten (gather_input_grad)
  at::Tensor whh[2], wih[2], h0s[2], c0s[2];
  for (int64_t d = 0; d < D; ++d) {
    whh[d] = acc_tensor(a.w[d].w_hh, acc);
    wih[d] = acc_tensor(a.w[d].w_ih, acc);
    h0s[d] = sorted_state<scalar_t, acc_t>(a.h0, p, d, H, aopts);
    c0s[d] = sorted_state<scalar_t, acc_t>(a.c0, p, d, H, aopts);
  }
  const scalar_t* X = a.x.data_ptr<scalar_t>();
  const scalar_t* dO = grad_out.defined() ? grad_out.data_ptr<scalar_t>() : nullptr;  // null: zeros
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
          if (dO != nullptr) {
            const scalar_t* g = dO + bt * D * H + d * H;
            acc_t* dst = dhp + i * H;
            for (int64_t j = 0; j < H; ++j) dst[j] += static_cast<acc_t>(g[j]);
          }
          acc_t* zr = Z + (rows + r) * K;
          const scalar_t* xr = X + bt * C;
          for (int64_t k = 0; k < C; ++k) zr[k] = static_cast<acc_t>(xr[k]);
          if (hb) zr[C] = acc_t(1);
          const acc_t* hp = s == 0 ? h0s[d].data_ptr<acc_t>() + i * H : Sp + (p.offsets[s - 1] + i) * 2 * H + H;
          std::copy_n(hp, H, zr + ho);
          where[rows + r] = bt;
        }
        const acc_t* cprev = s == 0 ? c0s[d].data_ptr<acc_t>() + i0 * H : Sp + (p.offsets[s - 1] + i0) * 2 * H;
        cell_bwd(n, H, Gp + row * 4 * H, 4 * H, Sp + row * 2 * H, 2 * H, cprev, s == 0 ? H : 2 * H, dhp + i0 * H,
                 dcp + i0 * H, dG + rows * 4 * H, 4 * H);
        at::Tensor dh_rows = dhd.narrow(0, i0, n);
        at::mm_out(dh_rows, dg.narrow(0, rows, n), whh[d]);
        rows += n;
        if (rows >= kChunkRows || s == 0) {
          const at::Tensor dgc = dg.narrow(0, 0, rows);
          dwi.addmm_(z.narrow(0, 0, rows).t(), dgc);
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
    // Fresh contiguous copies (a slice of m can already be contiguous, e.g. the bias row).
    const auto owned = [&](const at::Tensor& t) { return t.to(out_dtype, false, true, at::MemoryFormat::Contiguous); };
    grad_w[d * per] = owned(m.narrow(0, 0, C).t());
    grad_w[d * per + 1] = owned(m.narrow(0, ho, H).t());
    if (sh.has_bias) {
      grad_w[d * per + 2] = owned(m.select(0, C));
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
  gather_input_grad<scalar_t, acc_t>(dx, p, T, C, D, grad_x);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> lstm_fwd_cpu(
    const at::Tensor& x, const std::optional<at::Tensor>& lengths, at::TensorList weights, const std::optional<at::Tensor>& h0,
    const std::optional<at::Tensor>& c0, bool bidirectional, bool sequences) {
  const char* op = "sublocal::lstm_fwd";
  const LstmArgs a = lstm_prepare(x, lengths, weights, h0, c0, bidirectional, op);
  const auto& sh = a.shape;
  const int64_t B = sh.batch, T = sh.time, H = sh.hidden, D = sh.dirs;
  const Plan p = make_plan(a.lengths, B, T, D, op);
  auto opts = a.x.options();
  auto aopts = opts.dtype(state_dtype(a.x.scalar_type()));
  auto out = sequences ? cpu_output({B, T, D * H}, opts) : at::empty({0}, opts);
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

// ---- backward --------------------------------------------------------------------------------

// The backward's grad_out, contiguous, or an undefined tensor when it is None (zeros): the
// classifiers that read only the final states leave `out` unused, and materialising its
// (B, T, D H) zeros cost a 262 MB fill at `paper` (5% of the R-LSTM's training step in the
// profile), the page faults of a fresh 262 MB block and a read of it per step.
at::Tensor bwd_grad_out(const std::optional<at::Tensor>& grad_out, const at::Tensor& x, at::IntArrayRef shape,
                        const char* op) {
  if (!grad_out.has_value() || !grad_out->defined()) return at::Tensor();
  check_like(*grad_out, x, op, "grad_out", "x");
  check_shape(*grad_out, shape, op, "grad_out");
  return grad_out->contiguous();
}

std::tuple<at::Tensor, std::vector<at::Tensor>, at::Tensor, at::Tensor> lstm_bwd_cpu(
    const std::optional<at::Tensor>& grad_out, const at::Tensor& grad_h_n, const at::Tensor& grad_c_n, const at::Tensor& x,
    const std::optional<at::Tensor>& lengths, at::TensorList weights, const std::optional<at::Tensor>& h0,
    const std::optional<at::Tensor>& c0, const at::Tensor& gates, const at::Tensor& states, bool bidirectional) {
  const char* op = "sublocal::lstm_bwd";
  const LstmArgs a = lstm_prepare(x, lengths, weights, h0, c0, bidirectional, op);
  const auto& sh = a.shape;
  const int64_t B = sh.batch, T = sh.time, H = sh.hidden, D = sh.dirs;
  const at::Tensor go = bwd_grad_out(grad_out, x, {B, T, D * H}, op);
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
  const at::Tensor ghn = grad_h_n.contiguous(), gcn = grad_c_n.contiguous();
  const at::Tensor gw = gates.contiguous(), st = states.contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, a.x.scalar_type(), "lstm_bwd_cpu", [&] {
    lstm_bwd_impl<scalar_t>(a, p, go, ghn, gcn, gw, st, grad_x, grad_w, grad_h0, grad_c0);
  });
  return {grad_x, grad_w, grad_h0, grad_c0};
}

// ---- the multiplicative cell (mLSTM, UniRep) -------------------------------------------------
//
//   m_t = (W_mx x_t) * (W_mh h_{t-1});  [i f g o] = W_ih x_t + b_ih + W_hh m_t + b_hh;
//   then the LSTM cell: c_t = f c_{t-1} + i g, h_t = o tanh(c_t) (sigmoid i, f, o; tanh g).
//
// Same schedule as the LSTM (Plan: sorted batch, packed rows, tiles). The input projections of
// the gates and of m do not depend on the recurrence, so unlike the LSTM (whose per-step GEMM
// folds the projection in) they are one GEMM per direction over all N valid rows, with
// [W_ih | b ; W_mx | 0] (5H, C + 1) stacked, written straight into the workspace. Per step only
// the two dependent GEMMs run, over the still-running rows: mh = h_{t-1} W_mh^T (H x H) and
// gates += m W_hh^T (4H x H).
//
// Workspace (rows as the LSTM's): gates (D, N, 5H) = [i f g o activations | mx = W_mx x_t],
// states (D, N, 3H) = [c | h | mh = W_mh h_{t-1}]; m = mx * mh is recomputed where needed.
//
// Backward per step (reversed): the LSTM cell's dgates; dm = dgates W_hh; dmx = dm * mh,
// dmh = dm * mx; dh_{t-1} = dmh W_mh (+ the output gradient at t-1). Over chunks of rows:
// [dW_ih | db ; dW_mx | -] += [dgates | dmx]^T [x | 1], dW_hh += dgates^T m,
// dW_mh += dmh^T h_{t-1}, dx = [dgates | dmx] [W_ih ; W_mx].

// [W_ih | b_ih + b_hh ; W_mx | 0]: (5H, C + has_bias) in the compute dtype.
at::Tensor mlstm_input_weight(const LstmDirWeights& w, bool has_bias, at::ScalarType acc) {
  at::Tensor top = acc_tensor(w.w_ih, acc), bottom = acc_tensor(w.w_mx, acc);
  if (has_bias) {
    top = at::cat({top, (acc_tensor(w.b_ih, acc) + acc_tensor(w.b_hh, acc)).unsqueeze(1)}, 1);
    bottom = at::cat({bottom, at::zeros({bottom.size(0), 1}, bottom.options())}, 1);
  }
  return at::cat({top, bottom}, 0);
}

// m = mx * mh for n rows (strides in elements).
template <typename T>
void mlstm_product(int64_t n, int64_t H, const T* mx, int64_t mxs, const T* mh, int64_t mhs, T* m, int64_t ms) {
  for (int64_t r = 0; r < n; ++r)
    for (int64_t j = 0; j < H; ++j) m[r * ms + j] = mx[r * mxs + j] * mh[r * mhs + j];
}

// ---- the units schedule (large H) ------------------------------------------------------------
//
// With batch tiles every thread runs the two recurrent GEMMs over all H units for its own rows,
// so each thread streams all of W_hh and W_mh at every step: 72 MB of float32 at UniRep's
// H = 1900, which no cache holds. The units schedule gives every thread a slice of the hidden
// units for the whole active batch instead: it multiplies by its rows of W_mh and its four gate
// blocks of W_hh only, so the weights stream once per step whatever the thread count, and the
// GEMMs keep the whole batch as their M. Two barriers per step: all of m_t must be written
// before any thread's gate GEMM reads it, and all of h_t before the next step's W_mh GEMM.
// Directions run one after the other, each on the whole team.

// Which schedule the mLSTM runs: SUBLOCAL_LSTM_SCHEDULE=units or =tiles forces one (tests,
// benchmarks); otherwise units when the recurrent weights (5 H^2 values) pass
// kUnitsWeightBytes, i.e. outgrow a core's L2 (with one thread too: inference then still gets
// the lanes below).
constexpr int64_t kUnitsWeightBytes = 2 << 20;

bool mlstm_use_units(int64_t H, int64_t elem_size) {
  const char* env = std::getenv("SUBLOCAL_LSTM_SCHEDULE");
  if (env != nullptr && std::strcmp(env, "units") == 0) return true;
  if (env != nullptr && std::strcmp(env, "tiles") == 0) return false;
  return 5 * H * H * elem_size >= kUnitsWeightBytes;
}

// Hidden units [first, second) of thread k of n: whole groups of 16 units (a 64-byte row of
// float32), split as evenly as the groups allow; a thread may get none when H is small.
std::pair<int64_t, int64_t> unit_slice(int64_t H, int k, int n) {
  const int64_t groups = (H + 15) / 16;
  return {std::min(H, groups * k / n * 16), std::min(H, groups * (k + 1) / n * 16)};
}

// Lanes for inference (no workspace, so rows need not be packed by step): with all sequences
// starting at step 0, a batch whose lengths differ runs its long tail with few rows, each step
// streaming all the weights for them (a 35,000-residue protein beside 1,000-residue ones runs
// 34,000 steps of one row, memory-bound at 2.5 ms a step at H = 1900). Lanes keep the rows
// busy: each lane runs sequences one after another, each from its own initial state, so the
// batch takes about max(longest, total / lanes) steps. count = ceil(total / longest) lanes,
// but at least kMinLanes, and at most B: below about 64 rows the GEMMs fall off (at H = 1900,
// one thread's 1900 x 950 block ran at 42, 57, 75 and 85 GFLOP/s for 16, 32, 64 and 128 rows),
// so a batch with one very long protein runs more lanes and lets that one finish alone
// (measured on 381 proteins of 700 to 11,000 residues, 2 threads: 135 s with 64 lanes, 128 s
// with 96, 129 s with 128; ceil(total / longest) would be 37).
// Lanes are filled longest first, each sequence to the lane that frees first (LPT, within 4/3
// of the shortest schedule), and sorted by their end, so the running ones are a prefix. A batch
// of equal lengths gets one sequence a lane: the packed schedule.
constexpr int64_t kMinLanes = 96;
struct Lanes {
  int64_t count = 0, steps = 0;
  std::vector<int64_t> active;                             // lanes still running at step s
  std::vector<std::vector<std::pair<int64_t, int64_t>>> seqs;  // per lane: (rank, first step)

  // (rank, time within it) of lane r at step s, `cur` its current sequence's index.
  std::pair<int64_t, int64_t> at(int64_t r, int64_t cur, int64_t s) const {
    const auto& q = seqs[r][cur];
    return {q.first, s - q.second};
  }
};

Lanes make_lanes(const Plan& p) {
  Lanes l;
  const int64_t B = static_cast<int64_t>(p.len.size());
  if (B == 0) return l;
  l.count = std::min<int64_t>(std::max<int64_t>((p.total + p.max_len - 1) / p.max_len, kMinLanes), B);
  std::vector<std::pair<int64_t, int64_t>> ends(l.count);  // (end step, lane)
  l.seqs.assign(l.count, {});
  for (int64_t r = 0; r < l.count; ++r) ends[r] = {0, r};
  for (int64_t i = 0; i < B; ++i) {  // ranks are longest first
    auto first = std::min_element(ends.begin(), ends.end());
    l.seqs[first->second].emplace_back(i, first->first);
    first->first += p.len[i];
  }
  std::sort(ends.begin(), ends.end(), [](const auto& x, const auto& y) { return x.first > y.first; });
  std::vector<std::vector<std::pair<int64_t, int64_t>>> sorted;
  for (const auto& e : ends) sorted.push_back(std::move(l.seqs[e.second]));
  l.seqs = std::move(sorted);
  l.steps = ends.front().first;
  l.active.assign(l.steps, 0);
  for (int64_t r = 0; r < l.count; ++r)
    for (int64_t s = 0; s < ends[r].first; ++s) l.active[s] = r + 1;
  return l;
}

// A team of threads that meets at barriers: OpenMP's (at::parallel_for gives no barrier, and a
// spin barrier of our own would hang if the runtime granted fewer threads than asked). One
// thread when OpenMP is absent or the call is already inside a parallel region. An exception
// in one thread is kept and rethrown after the region; until then every thread still meets
// every barrier, doing no more work (`run` skips it), so no thread waits forever.
class Team {
 public:
  template <typename Body>
  static void launch(Body&& body) {
    Team team;
#ifdef _OPENMP
    const int want = at::in_parallel_region() ? 1 : std::max(1, at::get_num_threads());
#pragma omp parallel num_threads(want)
    {
      Member m{&team, omp_get_thread_num(), omp_get_num_threads()};
      body(m);
    }
#else
    Member m{&team, 0, 1};
    body(m);
#endif
    if (team.error_) std::rethrow_exception(team.error_);
  }

  struct Member {
    Team* team;
    int tid, size;
    void barrier() const {
#ifdef _OPENMP
      if (size > 1) {
#pragma omp barrier
      }
#endif
    }
    template <typename F>
    void run(F&& f) const {
      if (team->failed_.load(std::memory_order_relaxed)) return;
      try {
        f();
      } catch (...) {
        std::lock_guard<std::mutex> lock(team->mutex_);
        if (!team->error_) team->error_ = std::current_exception();
        team->failed_.store(true);
      }
    }
  };

 private:
  std::atomic<bool> failed_{false};
  std::mutex mutex_;
  std::exception_ptr error_;
};

// One direction of the mLSTM over the units schedule. kTrain: the rows are the workspace's
// (gates[d] already holds the input projections [W_ih x + b | W_mx x] of every valid row, and
// keeps the activations; states[d] gets [c | h | mh]). Otherwise (inference) one step's gates
// and two state buffers used in turn, the input projection per step from wx (5H, C + bias).
// out: the (B, T, D H) sequence output or null; pool: (B, D H) float64 running sums or null;
// h_n, c_n written for every sequence.
template <typename scalar_t, bool kTrain>
struct MlstmUnits {
  using acc_t = at::opmath_type<scalar_t>;
  const LstmArgs& a;
  const Plan& p;
  int64_t d;
  at::Tensor wx, whh, wmh, h0s, c0s;  // compute dtype; wx (5H, K) used by inference only
  at::Tensor gates, states;          // kTrain: this direction's workspace (N, 5H), (N, 3H)
  scalar_t* out;
  double* pool;
  scalar_t* h_n;
  scalar_t* c_n;

  void run(const at::TensorOptions& aopts) {
    const auto& sh = a.shape;
    const int64_t B = sh.batch, T = sh.time, C = sh.input, H = sh.hidden, D = sh.dirs;
    const int64_t hb = sh.has_bias ? 1 : 0, K = C + hb;
    const scalar_t* X = a.x.data_ptr<scalar_t>();
    // Training: the rows of step s are the ranks still running, [0, active[s]), all at time s.
    // Inference: the rows are lanes, each at its own sequence's time (make_lanes).
    const Lanes lanes = kTrain ? Lanes() : make_lanes(p);
    const int64_t rows = kTrain ? B : lanes.count, steps = kTrain ? p.max_len : lanes.steps;
    at::Tensor m = at::empty({rows, H}, aopts);
    at::Tensor g, st;  // inference: one step's gates, two state buffers used in turn
    if constexpr (!kTrain) {
      g = at::empty({rows, 5 * H}, aopts);
      st = at::empty({2, rows, 3 * H}, aopts);
    }
    acc_t* M = m.data_ptr<acc_t>();
    Team::launch([&](const Team::Member& team) {
      const FlushDenormalGuard flush;
      // OpenMP workers do not inherit the caller's thread-local dispatch state: keep the ATen
      // calls below autograd here too (the weights may require grad).
      at::AutoDispatchBelowADInplaceOrView below_autograd;
      const auto [j0, j1] = unit_slice(H, team.tid, team.size);
      const int64_t nj = j1 - j0;
      at::Tensor z;                      // inference: this thread's copy of the step's [x | 1] rows
      std::vector<int64_t> at_seq(rows, 0);  // inference: each lane's current sequence (every thread's own copy)
      if constexpr (!kTrain) {
        team.run([&] {
          z = at::empty({rows, K}, aopts);
          for (int64_t r = 0; r < rows; ++r) start_sequence(st[1][r], lanes.seqs[r][0].first, j0, j1);
        });
        team.barrier();  // every lane's initial state
      }
      for (int64_t s = 0; s < steps; ++s) {
        const int64_t n = kTrain ? p.active[s] : lanes.active[s];
        at::Tensor G, S, hprev;
        const acc_t* cprev = nullptr;
        int64_t cps = 3 * H;
        team.run([&] {
          if constexpr (kTrain) {
            G = gates.narrow(0, p.offsets[s], n);
            S = states.narrow(0, p.offsets[s], n);
            if (s > 0) {
              const at::Tensor prev = states.narrow(0, p.offsets[s - 1], n);
              hprev = prev.narrow(1, H, H);
              cprev = prev.data_ptr<acc_t>();
            } else {
              hprev = h0s.narrow(0, 0, n);
              cprev = c0s.data_ptr<acc_t>();
              cps = H;
            }
          } else {
            G = g.narrow(0, 0, n);
            S = st[s % 2].narrow(0, 0, n);
            const at::Tensor prev = st[(s + 1) % 2].narrow(0, 0, n);
            hprev = prev.narrow(1, H, H);
            cprev = prev.data_ptr<acc_t>();
          }
          if (nj == 0) return;
          if constexpr (!kTrain) {
            // This step's input projections for this thread's units: [W_ih x + b | W_mx x].
            acc_t* Z = z.data_ptr<acc_t>();
            for (int64_t r = 0; r < n; ++r) {
              const auto [i, t] = lanes.at(r, at_seq[r], s);
              const scalar_t* src = X + (p.order[i] * T + time_of(d, t, p.len[i])) * C;
              for (int64_t k = 0; k < C; ++k) Z[r * K + k] = static_cast<acc_t>(src[k]);
              if (hb) Z[r * K + C] = acc_t(1);
            }
            for (int64_t q = 0; q < 5; ++q) {
              at::Tensor gq = G.narrow(1, q * H + j0, nj);
              at::mm_out(gq, z.narrow(0, 0, n), wx.narrow(0, q * H + j0, nj).t());
            }
          }
          at::Tensor mh = S.narrow(1, 2 * H + j0, nj);
          at::mm_out(mh, hprev, wmh.narrow(0, j0, nj).t());
          mlstm_product(n, nj, G.data_ptr<acc_t>() + 4 * H + j0, 5 * H, S.data_ptr<acc_t>() + 2 * H + j0, 3 * H,
                        M + j0, H);
        });
        team.barrier();  // m_t complete
        team.run([&] {
          if (nj == 0) return;
          for (int64_t q = 0; q < 4; ++q) {
            G.narrow(1, q * H + j0, nj).addmm_(m.narrow(0, 0, n), whh.narrow(0, q * H + j0, nj).t());
          }
          acc_t* Gp = G.data_ptr<acc_t>();
          acc_t* Sp = S.data_ptr<acc_t>();
          cell_fwd_units(n, H, j0, nj, Gp, 5 * H, cprev, cps, Sp, 3 * H);
          for (int64_t r = 0; r < n; ++r) {
            const auto [i, t] = kTrain ? std::pair<int64_t, int64_t>{r, s} : lanes.at(r, at_seq[r], s);
            const acc_t* c = Sp + r * 3 * H;
            const acc_t* h = c + H;
            const int64_t b = p.order[i];
            if (out != nullptr) {
              scalar_t* o = out + (b * T + time_of(d, t, p.len[i])) * D * H + d * H;
              for (int64_t j = j0; j < j1; ++j) o[j] = static_cast<scalar_t>(h[j]);
            }
            if (pool != nullptr) {
              double* acc = pool + b * D * H + d * H;
              for (int64_t j = j0; j < j1; ++j) acc[j] += static_cast<double>(h[j]);
            }
            if (t + 1 < p.len[i]) continue;
            // The sequence's last step: its final states; in inference the lane's next sequence
            // starts from its own initial state in this row at the next step.
            for (int64_t j = j0; j < j1; ++j) {
              c_n[(d * B + b) * H + j] = static_cast<scalar_t>(c[j]);
              h_n[(d * B + b) * H + j] = static_cast<scalar_t>(h[j]);
            }
            if constexpr (!kTrain) {
              if (++at_seq[r] < static_cast<int64_t>(lanes.seqs[r].size())) {
                start_sequence(st[s % 2][r], lanes.seqs[r][at_seq[r]].first, j0, j1);
              }
            }
          }
        });
        team.barrier();  // h_t complete
      }
    });
  }

  // Row `row` (3H: c | h | mh) of a state buffer set to the initial state of the sequence ranked
  // `rank`, units [j0, j1): c0 and h0 (zeros when absent).
  void start_sequence(at::Tensor row, int64_t rank, int64_t j0, int64_t j1) const {
    const int64_t H = a.shape.hidden;
    acc_t* c = row.data_ptr<acc_t>();
    const acc_t* c0 = c0s.data_ptr<acc_t>() + rank * H;
    const acc_t* h0 = h0s.data_ptr<acc_t>() + rank * H;
    std::copy(c0 + j0, c0 + j1, c + j0);
    std::copy(h0 + j0, h0 + j1, c + H + j0);
  }
};

template <typename scalar_t>
void mlstm_fwd_impl(const LstmArgs& a, const Plan& p, at::Tensor& out, at::Tensor& h_n, at::Tensor& c_n,
                    at::Tensor& gates, at::Tensor& states) {
  using acc_t = at::opmath_type<scalar_t>;
  const auto& sh = a.shape;
  const int64_t B = sh.batch, T = sh.time, C = sh.input, H = sh.hidden, D = sh.dirs;
  const int64_t hb = sh.has_bias ? 1 : 0, K = C + hb;
  const auto acc = gates.scalar_type();
  const auto aopts = gates.options();
  const scalar_t* X = a.x.data_ptr<scalar_t>();
  at::Tensor whhT[2], wmhT[2], h0s[2], c0s[2];
  for (int64_t d = 0; d < D; ++d) {
    whhT[d] = acc_tensor(a.w[d].w_hh, acc).t();
    wmhT[d] = acc_tensor(a.w[d].w_mh, acc).t();
    h0s[d] = sorted_state<scalar_t, acc_t>(a.h0, p, d, H, aopts);
    c0s[d] = sorted_state<scalar_t, acc_t>(a.c0, p, d, H, aopts);
    // The input projections of every valid step: [x | 1] gathered in packed order, one GEMM.
    at::Tensor xp = at::empty({p.total, K}, aopts);
    acc_t* XP = xp.data_ptr<acc_t>();
    at::parallel_for(0, p.max_len, 1, [&](int64_t begin, int64_t end) {
      const FlushDenormalGuard flush;
      for (int64_t s = begin; s < end; ++s) {
        for (int64_t i = 0; i < p.active[s]; ++i) {
          const scalar_t* src = X + (p.order[i] * T + time_of(d, s, p.len[i])) * C;
          acc_t* dst = XP + (p.offsets[s] + i) * K;
          for (int64_t k = 0; k < C; ++k) dst[k] = static_cast<acc_t>(src[k]);
          if (hb) dst[C] = acc_t(1);
        }
      }
    });
    at::Tensor gd = gates[d];
    at::mm_out(gd, xp, mlstm_input_weight(a.w[d], sh.has_bias, acc).t());
  }
  scalar_t* O = out.dim() == 3 ? out.data_ptr<scalar_t>() : nullptr;  // null: no sequence output
  if (mlstm_use_units(H, static_cast<int64_t>(sizeof(acc_t)))) {
    for (int64_t d = 0; d < D; ++d) {
      MlstmUnits<scalar_t, true>{a, p, d, at::Tensor(), acc_tensor(a.w[d].w_hh, acc), acc_tensor(a.w[d].w_mh, acc),
                                 h0s[d], c0s[d], gates[d], states[d], O, nullptr, h_n.data_ptr<scalar_t>(),
                                 c_n.data_ptr<scalar_t>()}
          .run(aopts);
    }
    zero_padding(O, p, T, D * H);
    return;
  }
  const int64_t ntiles = static_cast<int64_t>(p.tile_start.size()) - 1;
  at::parallel_for(0, D * ntiles, 1, [&](int64_t begin, int64_t end) {
    const FlushDenormalGuard flush;
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    for (int64_t item = begin; item < end; ++item) {
      const int64_t d = item / ntiles, i0 = p.tile_start[item % ntiles], i1 = p.tile_start[item % ntiles + 1];
      at::Tensor G = gates[d], S = states[d];
      acc_t* Gp = G.data_ptr<acc_t>();
      acc_t* Sp = S.data_ptr<acc_t>();
      at::Tensor m = at::empty({i1 - i0, H}, aopts);
      for (int64_t s = 0; s < p.max_len; ++s) {
        const int64_t n = std::min(p.active[s], i1) - i0;
        if (n <= 0) break;
        const int64_t row = p.offsets[s] + i0;
        const at::Tensor hprev = s == 0 ? h0s[d].narrow(0, i0, n) : S.narrow(0, p.offsets[s - 1] + i0, n).narrow(1, H, H);
        at::Tensor mh = S.narrow(0, row, n).narrow(1, 2 * H, H);
        at::mm_out(mh, hprev, wmhT[d]);
        mlstm_product(n, H, Gp + row * 5 * H + 4 * H, 5 * H, Sp + row * 3 * H + 2 * H, 3 * H, m.data_ptr<acc_t>(), H);
        G.narrow(0, row, n).narrow(1, 0, 4 * H).addmm_(m.narrow(0, 0, n), whhT[d]);
        const acc_t* cprev = s == 0 ? c0s[d].data_ptr<acc_t>() + i0 * H : Sp + (p.offsets[s - 1] + i0) * 3 * H;
        cell_fwd(n, H, Gp + row * 5 * H, 5 * H, cprev, s == 0 ? H : 3 * H, Sp + row * 3 * H, 3 * H);
        for (int64_t r = 0; r < n; ++r) {
          const int64_t i = i0 + r;
          const acc_t* h = Sp + (row + r) * 3 * H + H;
          if (O == nullptr) continue;
          scalar_t* o = O + (p.order[i] * T + time_of(d, s, p.len[i])) * D * H + d * H;
          for (int64_t j = 0; j < H; ++j) o[j] = static_cast<scalar_t>(h[j]);
        }
      }
      scalar_t* hn = h_n.data_ptr<scalar_t>() + d * B * H;
      scalar_t* cn = c_n.data_ptr<scalar_t>() + d * B * H;
      for (int64_t i = i0; i < i1; ++i) {
        const acc_t* st = Sp + (p.offsets[p.len[i] - 1] + i) * 3 * H;
        for (int64_t j = 0; j < H; ++j) {
          cn[p.order[i] * H + j] = static_cast<scalar_t>(st[j]);
          hn[p.order[i] * H + j] = static_cast<scalar_t>(st[H + j]);
        }
      }
    }
  });
  zero_padding(O, p, T, D * H);
}

// Inference forward: the same cell with nothing kept for a backward. A work item holds its
// current step's (tile rows, 5H) gates and two (tile rows, 3H) state buffers used in turn; the
// input projection runs per step on the active rows (the training forward's one GEMM over all
// rows would need the (N, 5H) workspace). The arithmetic is the training forward's, but the
// projection GEMM has other shapes, so results may differ from it by rounding (last bits).
template <typename scalar_t>
void mlstm_infer_impl(const LstmArgs& a, const Plan& p, at::Tensor& out, double* pool, at::Tensor& h_n,
                      at::Tensor& c_n, const at::TensorOptions& aopts) {
  using acc_t = at::opmath_type<scalar_t>;
  const auto& sh = a.shape;
  const int64_t B = sh.batch, T = sh.time, C = sh.input, H = sh.hidden, D = sh.dirs;
  const int64_t hb = sh.has_bias ? 1 : 0, K = C + hb;
  const auto acc = c10::typeMetaToScalarType(aopts.dtype());
  at::Tensor wxT[2], whhT[2], wmhT[2], h0s[2], c0s[2];
  for (int64_t d = 0; d < D; ++d) {
    wxT[d] = mlstm_input_weight(a.w[d], sh.has_bias, acc).t();
    whhT[d] = acc_tensor(a.w[d].w_hh, acc).t();
    wmhT[d] = acc_tensor(a.w[d].w_mh, acc).t();
    h0s[d] = sorted_state<scalar_t, acc_t>(a.h0, p, d, H, aopts);
    c0s[d] = sorted_state<scalar_t, acc_t>(a.c0, p, d, H, aopts);
  }
  const scalar_t* X = a.x.data_ptr<scalar_t>();
  scalar_t* O = out.dim() == 3 ? out.data_ptr<scalar_t>() : nullptr;  // null: no sequence output
  scalar_t* HN = h_n.data_ptr<scalar_t>();
  scalar_t* CN = c_n.data_ptr<scalar_t>();
  if (mlstm_use_units(H, static_cast<int64_t>(sizeof(acc_t)))) {
    for (int64_t d = 0; d < D; ++d) {
      MlstmUnits<scalar_t, false>{a, p, d, wxT[d].t(), whhT[d].t(), wmhT[d].t(), h0s[d], c0s[d], at::Tensor(),
                                  at::Tensor(), O, pool, HN, CN}
          .run(aopts);
    }
    zero_padding(O, p, T, D * H);
    return;
  }
  const int64_t ntiles = static_cast<int64_t>(p.tile_start.size()) - 1;
  at::parallel_for(0, D * ntiles, 1, [&](int64_t begin, int64_t end) {
    const FlushDenormalGuard flush;
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    for (int64_t item = begin; item < end; ++item) {
      const int64_t d = item / ntiles, i0 = p.tile_start[item % ntiles], i1 = p.tile_start[item % ntiles + 1];
      const int64_t nt = i1 - i0;
      at::Tensor z = at::empty({nt, K}, aopts), g = at::empty({nt, 5 * H}, aopts), m = at::empty({nt, H}, aopts);
      at::Tensor st = at::empty({2, nt, 3 * H}, aopts);
      acc_t* Z = z.data_ptr<acc_t>();
      acc_t* Gp = g.data_ptr<acc_t>();
      for (int64_t s = 0; s < p.max_len; ++s) {
        const int64_t n = std::min(p.active[s], i1) - i0;
        if (n <= 0) break;
        for (int64_t r = 0; r < n; ++r) {
          const int64_t i = i0 + r;
          const scalar_t* src = X + (p.order[i] * T + time_of(d, s, p.len[i])) * C;
          for (int64_t k = 0; k < C; ++k) Z[r * K + k] = static_cast<acc_t>(src[k]);
          if (hb) Z[r * K + C] = acc_t(1);
        }
        at::Tensor gs = g.narrow(0, 0, n);
        at::mm_out(gs, z.narrow(0, 0, n), wxT[d]);
        at::Tensor cur_t = st[s % 2], prev_t = st[(s + 1) % 2];
        acc_t* cur = cur_t.data_ptr<acc_t>();
        const at::Tensor hprev = s == 0 ? h0s[d].narrow(0, i0, n) : prev_t.narrow(0, 0, n).narrow(1, H, H);
        at::Tensor mh = cur_t.narrow(0, 0, n).narrow(1, 2 * H, H);
        at::mm_out(mh, hprev, wmhT[d]);
        mlstm_product(n, H, Gp + 4 * H, 5 * H, cur + 2 * H, 3 * H, m.data_ptr<acc_t>(), H);
        gs.narrow(1, 0, 4 * H).addmm_(m.narrow(0, 0, n), whhT[d]);
        const acc_t* cprev = s == 0 ? c0s[d].data_ptr<acc_t>() + i0 * H : prev_t.data_ptr<acc_t>();
        cell_fwd(n, H, Gp, 5 * H, cprev, s == 0 ? H : 3 * H, cur, 3 * H);
        for (int64_t r = 0; r < n; ++r) {
          const int64_t i = i0 + r;
          const acc_t* h = cur + r * 3 * H + H;
          add_to_pool(pool, p.order[i], d, D, H, h);
          if (O == nullptr) continue;
          scalar_t* o = O + (p.order[i] * T + time_of(d, s, p.len[i])) * D * H + d * H;
          for (int64_t j = 0; j < H; ++j) o[j] = static_cast<scalar_t>(h[j]);
        }
        // Ranks [n_next, n) of the tile ran their last step now.
        const int64_t n_next = s + 1 < p.max_len ? std::max<int64_t>(std::min(p.active[s + 1], i1) - i0, 0) : 0;
        for (int64_t r = n_next; r < n; ++r) {
          const acc_t* c = cur + r * 3 * H;
          const int64_t b = p.order[i0 + r];
          for (int64_t j = 0; j < H; ++j) {
            CN[(d * B + b) * H + j] = static_cast<scalar_t>(c[j]);
            HN[(d * B + b) * H + j] = static_cast<scalar_t>(c[H + j]);
          }
        }
      }
    }
  });
  zero_padding(O, p, T, D * H);
}

// One direction of the mLSTM's backward over the units schedule (the forward's MlstmUnits, in
// reverse): every thread owns hidden units [j0, j1) for the whole active batch. Per step: the
// cell's backward for its units (then a barrier: dm needs every unit's dgates), dm = dgates W_hh
// for its columns and dmx, dmh, m (a barrier: dh needs every unit's dmh), dh_{t-1} = dmh W_mh for
// its columns. The chunk GEMMs for the weight gradients split by the gradient's rows (a thread's
// units), dx by the chunk's rows; a barrier before and after them.
template <typename scalar_t>
struct MlstmUnitsBwd {
  using acc_t = at::opmath_type<scalar_t>;
  const LstmArgs& a;
  const Plan& p;
  int64_t d;
  at::Tensor wx, whh, wmh, h0s, c0s;  // wx: [W_ih ; W_mx] (5H, C)
  at::Tensor gates, states;          // this direction's workspace
  at::Tensor dh, dc;                 // (B, H) rank order, this direction's
  at::Tensor dwx, dwhh, dwmh;        // (5H, K), (4H, H), (H, H) accumulators
  acc_t* dxp;                        // (B, T, C) this direction's input gradient
  const scalar_t* dO;                // (B, T, D H) or null (zeros)
  const scalar_t* dHn;
  const scalar_t* dCn;

  void run(const at::TensorOptions& aopts) {
    const auto& sh = a.shape;
    const int64_t B = sh.batch, T = sh.time, C = sh.input, H = sh.hidden, D = sh.dirs;
    const int64_t hb = sh.has_bias ? 1 : 0, K = C + hb, cap = kChunkRows + B;
    const scalar_t* X = a.x.data_ptr<scalar_t>();
    const acc_t* Gp = gates.data_ptr<acc_t>();
    const acc_t* Sp = states.data_ptr<acc_t>();
    acc_t* dhp = dh.data_ptr<acc_t>();
    acc_t* dcp = dc.data_ptr<acc_t>();
    at::Tensor dg = cpu_output({cap, 5 * H}, aopts), z = at::empty({cap, K}, aopts), dxc = at::empty({cap, C}, aopts);
    at::Tensor mb = at::empty({cap, H}, aopts), dmh = at::empty({cap, H}, aopts), hp = at::empty({cap, H}, aopts);
    at::Tensor dm = at::empty({B, H}, aopts);
    acc_t* dG = dg.data_ptr<acc_t>();
    acc_t* Z = z.data_ptr<acc_t>();
    acc_t* MB = mb.data_ptr<acc_t>();
    acc_t* DMH = dmh.data_ptr<acc_t>();
    acc_t* HP = hp.data_ptr<acc_t>();
    acc_t* DM = dm.data_ptr<acc_t>();
    std::vector<int64_t> where(cap);
    Team::launch([&](const Team::Member& team) {
      const FlushDenormalGuard flush;
      at::AutoDispatchBelowADInplaceOrView below_autograd;
      const auto [j0, j1] = unit_slice(H, team.tid, team.size);
      const int64_t nj = j1 - j0;
      int64_t rows = 0, prev_n = 0;
      for (int64_t s = p.max_len - 1; s >= 0; --s) {
        const int64_t n = p.active[s];
        const int64_t row = p.offsets[s];
        team.run([&] {
          // Sequences whose last step is s start here, from the gradients of h_n and c_n.
          for (int64_t i = prev_n; i < n; ++i) {
            const int64_t b = p.order[i];
            for (int64_t j = j0; j < j1; ++j) {
              dhp[i * H + j] = static_cast<acc_t>(dHn[(d * B + b) * H + j]);
              dcp[i * H + j] = static_cast<acc_t>(dCn[(d * B + b) * H + j]);
            }
          }
          const int64_t r0 = n * team.tid / team.size, r1 = n * (team.tid + 1) / team.size;  // this thread's rows
          for (int64_t i = 0; i < n; ++i) {
            const int64_t bt = p.order[i] * T + time_of(d, s, p.len[i]);
            if (dO != nullptr) {
              const scalar_t* g = dO + bt * D * H + d * H;
              for (int64_t j = j0; j < j1; ++j) dhp[i * H + j] += static_cast<acc_t>(g[j]);
            }
            const acc_t* hprev = s == 0 ? h0s.data_ptr<acc_t>() + i * H : Sp + (p.offsets[s - 1] + i) * 3 * H + H;
            std::copy(hprev + j0, hprev + j1, HP + (rows + i) * H + j0);
            if (i >= r0 && i < r1) {
              acc_t* zr = Z + (rows + i) * K;
              const scalar_t* xr = X + bt * C;
              for (int64_t k = 0; k < C; ++k) zr[k] = static_cast<acc_t>(xr[k]);
              if (hb) zr[C] = acc_t(1);
              where[rows + i] = bt;
            }
          }
          if (nj == 0) return;
          const acc_t* cprev = s == 0 ? c0s.data_ptr<acc_t>() : Sp + p.offsets[s - 1] * 3 * H;
          cell_bwd_units(n, H, j0, nj, Gp + row * 5 * H, 5 * H, Sp + row * 3 * H, 3 * H, cprev, s == 0 ? H : 3 * H,
                         dhp, dcp, dG + rows * 5 * H, 5 * H);
        });
        prev_n = n;
        team.barrier();  // every unit's dgates of this step
        team.run([&] {
          if (nj == 0) return;
          at::Tensor dmj = dm.narrow(0, 0, n).narrow(1, j0, nj);
          at::mm_out(dmj, dg.narrow(0, rows, n).narrow(1, 0, 4 * H), whh.narrow(1, j0, nj));
          const acc_t* mx = Gp + row * 5 * H + 4 * H;
          const acc_t* mh = Sp + row * 3 * H + 2 * H;
          for (int64_t i = 0; i < n; ++i) {
            for (int64_t j = j0; j < j1; ++j) {
              const acc_t v = DM[i * H + j], x_ = mx[i * 5 * H + j], h_ = mh[i * 3 * H + j];
              dG[(rows + i) * 5 * H + 4 * H + j] = v * h_;
              DMH[(rows + i) * H + j] = v * x_;
              MB[(rows + i) * H + j] = x_ * h_;
            }
          }
        });
        team.barrier();  // every unit's dmh of this step
        team.run([&] {
          if (nj == 0) return;
          at::Tensor dhj = dh.narrow(0, 0, n).narrow(1, j0, nj);
          at::mm_out(dhj, dmh.narrow(0, rows, n), wmh.narrow(1, j0, nj));
        });
        rows += n;
        if (rows >= kChunkRows || s == 0) {
          team.barrier();  // the chunk's rows complete
          team.run([&] {
            if (nj > 0) {
              const at::Tensor zc = z.narrow(0, 0, rows), mc = mb.narrow(0, 0, rows), hc = hp.narrow(0, 0, rows);
              for (int64_t q = 0; q < 5; ++q) {
                const at::Tensor gq = dg.narrow(0, 0, rows).narrow(1, q * H + j0, nj);
                dwx.narrow(0, q * H + j0, nj).addmm_(gq.t(), zc);
                if (q < 4) dwhh.narrow(0, q * H + j0, nj).addmm_(gq.t(), mc);
              }
              dwmh.narrow(0, j0, nj).addmm_(dmh.narrow(0, 0, rows).narrow(1, j0, nj).t(), hc);
            }
            const int64_t q0 = rows * team.tid / team.size, q1 = rows * (team.tid + 1) / team.size;
            if (q1 > q0) {
              at::Tensor dxr = dxc.narrow(0, q0, q1 - q0);
              at::mm_out(dxr, dg.narrow(0, q0, q1 - q0), wx);
              const acc_t* src = dxc.data_ptr<acc_t>();
              for (int64_t q = q0; q < q1; ++q) std::copy_n(src + q * C, C, dxp + where[q] * C);
            }
          });
          team.barrier();  // the chunk's buffers free again
          rows = 0;
        }
      }
    });
  }
};

template <typename scalar_t>
void mlstm_bwd_impl(const LstmArgs& a, const Plan& p, const at::Tensor& grad_out, const at::Tensor& grad_h_n,
                    const at::Tensor& grad_c_n, const at::Tensor& gates, const at::Tensor& states,
                    at::Tensor& grad_x, std::vector<at::Tensor>& grad_w, at::Tensor& grad_h0, at::Tensor& grad_c0) {
  using acc_t = at::opmath_type<scalar_t>;
  const auto& sh = a.shape;
  const int64_t B = sh.batch, T = sh.time, C = sh.input, H = sh.hidden, D = sh.dirs;
  const int64_t hb = sh.has_bias ? 1 : 0, K = C + hb;
  const auto acc = gates.scalar_type();
  const auto aopts = gates.options();
  const bool units = mlstm_use_units(H, static_cast<int64_t>(sizeof(acc_t)));
  const int64_t ntiles = units ? 1 : static_cast<int64_t>(p.tile_start.size()) - 1;
  auto dh = at::empty({D, B, H}, aopts);  // gradient reaching h_s, rank order
  auto dc = at::empty({D, B, H}, aopts);  // gradient reaching c_s, rank order
  auto dwx = at::zeros({D * ntiles, 5 * H, K}, aopts);  // [dW_ih | db ; dW_mx | -] per item
  auto dwhh = at::zeros({D * ntiles, 4 * H, H}, aopts);
  auto dwmh = at::zeros({D * ntiles, H, H}, aopts);
  auto dx = cpu_output({D, B, T, C}, aopts);  // per direction; padding rows unwritten (gather_input_grad)
  at::Tensor wx[2], whh[2], wmh[2], h0s[2], c0s[2];
  for (int64_t d = 0; d < D; ++d) {
    wx[d] = mlstm_input_weight(a.w[d], sh.has_bias, acc).narrow(1, 0, C);  // [W_ih ; W_mx]
    whh[d] = acc_tensor(a.w[d].w_hh, acc);
    wmh[d] = acc_tensor(a.w[d].w_mh, acc);
    h0s[d] = sorted_state<scalar_t, acc_t>(a.h0, p, d, H, aopts);
    c0s[d] = sorted_state<scalar_t, acc_t>(a.c0, p, d, H, aopts);
  }
  const scalar_t* X = a.x.data_ptr<scalar_t>();
  const scalar_t* dO = grad_out.defined() ? grad_out.data_ptr<scalar_t>() : nullptr;  // null: zeros
  const scalar_t* dHn = grad_h_n.data_ptr<scalar_t>();
  const scalar_t* dCn = grad_c_n.data_ptr<scalar_t>();
  if (units) {
    for (int64_t d = 0; d < D; ++d) {
      MlstmUnitsBwd<scalar_t>{a, p, d, wx[d], whh[d], wmh[d], h0s[d], c0s[d], gates[d], states[d], dh[d], dc[d],
                              dwx[d], dwhh[d], dwmh[d], dx[d].data_ptr<acc_t>(), dO, dHn, dCn}
          .run(aopts);
    }
  }
  at::parallel_for(0, units ? 0 : D * ntiles, 1, [&](int64_t begin, int64_t end) {
    const FlushDenormalGuard flush;
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    for (int64_t item = begin; item < end; ++item) {
      const int64_t d = item / ntiles, i0 = p.tile_start[item % ntiles], i1 = p.tile_start[item % ntiles + 1];
      const int64_t nt = i1 - i0, cap = kChunkRows + nt;
      const acc_t* Gp = gates[d].data_ptr<acc_t>();
      const acc_t* Sp = states[d].data_ptr<acc_t>();
      at::Tensor dhd = dh[d], dwxi = dwx[item], dwhhi = dwhh[item], dwmhi = dwmh[item];
      acc_t* dhp = dhd.data_ptr<acc_t>();
      acc_t* dcp = dc[d].data_ptr<acc_t>();
      acc_t* dxp = dx[d].data_ptr<acc_t>();
      // A chunk of steps: [dgates | dmx], [x | 1], m, dmh and h_prev rows, and where each row's
      // dx goes (flat (b, t) index).
      at::Tensor dg = cpu_output({cap, 5 * H}, aopts), z = at::empty({cap, K}, aopts);
      at::Tensor mb = at::empty({cap, H}, aopts), dmh = at::empty({cap, H}, aopts), hp = at::empty({cap, H}, aopts);
      at::Tensor dm = at::empty({nt, H}, aopts), dxc = at::empty({cap, C}, aopts);
      acc_t* dG = dg.data_ptr<acc_t>();
      acc_t* Z = z.data_ptr<acc_t>();
      acc_t* MB = mb.data_ptr<acc_t>();
      acc_t* DMH = dmh.data_ptr<acc_t>();
      acc_t* HP = hp.data_ptr<acc_t>();
      const acc_t* DM = dm.data_ptr<acc_t>();
      std::vector<int64_t> where(cap);
      int64_t rows = 0, prev_n = 0;
      for (int64_t s = p.len[i0] - 1; s >= 0; --s) {
        const int64_t n = std::min(p.active[s], i1) - i0;
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
          if (dO != nullptr) {
            const scalar_t* g = dO + bt * D * H + d * H;
            acc_t* dst = dhp + i * H;
            for (int64_t j = 0; j < H; ++j) dst[j] += static_cast<acc_t>(g[j]);
          }
          acc_t* zr = Z + (rows + r) * K;
          const scalar_t* xr = X + bt * C;
          for (int64_t k = 0; k < C; ++k) zr[k] = static_cast<acc_t>(xr[k]);
          if (hb) zr[C] = acc_t(1);
          const acc_t* hprev = s == 0 ? h0s[d].data_ptr<acc_t>() + i * H : Sp + (p.offsets[s - 1] + i) * 3 * H + H;
          std::copy_n(hprev, H, HP + (rows + r) * H);
          where[rows + r] = bt;
        }
        const acc_t* cprev = s == 0 ? c0s[d].data_ptr<acc_t>() + i0 * H : Sp + (p.offsets[s - 1] + i0) * 3 * H;
        cell_bwd(n, H, Gp + row * 5 * H, 5 * H, Sp + row * 3 * H, 3 * H, cprev, s == 0 ? H : 3 * H, dhp + i0 * H,
                 dcp + i0 * H, dG + rows * 5 * H, 5 * H);
        at::Tensor dmn = dm.narrow(0, 0, n);
        at::mm_out(dmn, dg.narrow(0, rows, n).narrow(1, 0, 4 * H), whh[d]);
        const acc_t* mx = Gp + row * 5 * H + 4 * H;
        const acc_t* mh = Sp + row * 3 * H + 2 * H;
        for (int64_t r = 0; r < n; ++r) {
          for (int64_t j = 0; j < H; ++j) {
            const acc_t v = DM[r * H + j], x_ = mx[r * 5 * H + j], h_ = mh[r * 3 * H + j];
            dG[(rows + r) * 5 * H + 4 * H + j] = v * h_;
            DMH[(rows + r) * H + j] = v * x_;
            MB[(rows + r) * H + j] = x_ * h_;
          }
        }
        at::Tensor dh_rows = dhd.narrow(0, i0, n);
        at::mm_out(dh_rows, dmh.narrow(0, rows, n), wmh[d]);
        rows += n;
        if (rows >= kChunkRows || s == 0) {
          const at::Tensor dgc = dg.narrow(0, 0, rows);
          dwxi.addmm_(dgc.t(), z.narrow(0, 0, rows));
          dwhhi.addmm_(dgc.narrow(1, 0, 4 * H).t(), mb.narrow(0, 0, rows));
          dwmhi.addmm_(dmh.narrow(0, 0, rows).t(), hp.narrow(0, 0, rows));
          at::Tensor dxr = dxc.narrow(0, 0, rows);
          at::mm_out(dxr, dgc, wx[d]);
          const acc_t* src = dxc.data_ptr<acc_t>();
          for (int64_t q = 0; q < rows; ++q) std::copy_n(src + q * C, C, dxp + where[q] * C);
          rows = 0;
        }
      }
    }
  });
  const int64_t per = sh.has_bias ? 6 : 4;
  const auto out_dtype = a.x.scalar_type();
  for (int64_t d = 0; d < D; ++d) {
    const at::Tensor mx = dwx.narrow(0, d * ntiles, ntiles).sum(0);
    grad_w[d * per] = mx.narrow(0, 0, 4 * H).narrow(1, 0, C).to(out_dtype).contiguous();
    grad_w[d * per + 1] = dwhh.narrow(0, d * ntiles, ntiles).sum(0).to(out_dtype).contiguous();
    if (sh.has_bias) {
      grad_w[d * per + 2] = mx.narrow(0, 0, 4 * H).select(1, C).to(out_dtype).contiguous();
      grad_w[d * per + 3] = grad_w[d * per + 2].clone();
    }
    grad_w[d * per + per - 2] = mx.narrow(0, 4 * H, H).narrow(1, 0, C).to(out_dtype).contiguous();
    grad_w[d * per + per - 1] = dwmh.narrow(0, d * ntiles, ntiles).sum(0).to(out_dtype).contiguous();
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
  gather_input_grad<scalar_t, acc_t>(dx, p, T, C, D, grad_x);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> mlstm_fwd_cpu(
    const at::Tensor& x, const std::optional<at::Tensor>& lengths, at::TensorList weights,
    const std::optional<at::Tensor>& h0, const std::optional<at::Tensor>& c0, bool bidirectional, bool sequences) {
  const char* op = "sublocal::mlstm_fwd";
  const LstmArgs a = lstm_prepare(x, lengths, weights, h0, c0, bidirectional, op, /*multiplicative=*/true);
  const auto& sh = a.shape;
  const int64_t B = sh.batch, T = sh.time, H = sh.hidden, D = sh.dirs;
  const Plan p = make_plan(a.lengths, B, T, D, op);
  auto opts = a.x.options();
  auto aopts = opts.dtype(state_dtype(a.x.scalar_type()));
  auto out = sequences ? cpu_output({B, T, D * H}, opts) : at::empty({0}, opts);
  auto h_n = at::empty({D, B, H}, opts);
  auto c_n = at::empty({D, B, H}, opts);
  auto gates = cpu_output({D, p.total, 5 * H}, aopts);
  auto states = cpu_output({D, p.total, 3 * H}, aopts);
  if (B == 0) return {out, h_n, c_n, gates, states};
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, a.x.scalar_type(), "mlstm_fwd_cpu", [&] {
    mlstm_fwd_impl<scalar_t>(a, p, out, h_n, c_n, gates, states);
  });
  return {out, h_n, c_n, gates, states};
}

// The forward without the workspace, for when no gradient is needed (sublocal::lstm_infer and
// sublocal::mlstm_infer). mean: `out` is (B, D H) instead, each direction's hidden states
// averaged over the sequence's valid steps (summed in float64 as the steps run), and the
// (B, T, D H) sequence is never written: a pooled embedding of a 35,000-residue protein keeps
// no per-step state.
template <bool kMultiplicative>
std::tuple<at::Tensor, at::Tensor, at::Tensor> infer_cpu(const at::Tensor& x, const std::optional<at::Tensor>& lengths,
                                                         at::TensorList weights, const std::optional<at::Tensor>& h0,
                                                         const std::optional<at::Tensor>& c0, bool bidirectional,
                                                         bool sequences, bool mean) {
  const char* op = kMultiplicative ? "sublocal::mlstm_infer" : "sublocal::lstm_infer";
  const LstmArgs a = lstm_prepare(x, lengths, weights, h0, c0, bidirectional, op, kMultiplicative);
  const auto& sh = a.shape;
  const int64_t B = sh.batch, T = sh.time, H = sh.hidden, D = sh.dirs;
  const Plan p = make_plan(a.lengths, B, T, D, op);
  auto opts = a.x.options();
  auto out = sequences && !mean ? cpu_output({B, T, D * H}, opts) : at::empty({0}, opts);
  auto h_n = at::empty({D, B, H}, opts);
  auto c_n = at::empty({D, B, H}, opts);
  at::Tensor pool = mean ? at::zeros({B, D * H}, opts.dtype(at::kDouble)) : at::Tensor();
  if (B > 0) {
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, a.x.scalar_type(), "lstm_infer_cpu", [&] {
      double* sums = mean ? pool.data_ptr<double>() : nullptr;
      const auto aopts = opts.dtype(state_dtype(a.x.scalar_type()));
      if constexpr (kMultiplicative) {
        mlstm_infer_impl<scalar_t>(a, p, out, sums, h_n, c_n, aopts);
      } else {
        lstm_infer_impl<scalar_t>(a, p, out, sums, h_n, c_n, aopts);
      }
    });
  }
  if (mean) {
    at::Tensor steps = at::empty({B, 1}, opts.dtype(at::kDouble));
    double* st = steps.data_ptr<double>();
    for (int64_t i = 0; i < B; ++i) st[p.order[i]] = static_cast<double>(p.len[i]);
    out = pool.div_(steps).to(a.x.scalar_type());
  }
  return {out, h_n, c_n};
}

std::tuple<at::Tensor, std::vector<at::Tensor>, at::Tensor, at::Tensor> mlstm_bwd_cpu(
    const std::optional<at::Tensor>& grad_out, const at::Tensor& grad_h_n, const at::Tensor& grad_c_n, const at::Tensor& x,
    const std::optional<at::Tensor>& lengths, at::TensorList weights, const std::optional<at::Tensor>& h0,
    const std::optional<at::Tensor>& c0, const at::Tensor& gates, const at::Tensor& states, bool bidirectional) {
  const char* op = "sublocal::mlstm_bwd";
  const LstmArgs a = lstm_prepare(x, lengths, weights, h0, c0, bidirectional, op, /*multiplicative=*/true);
  const auto& sh = a.shape;
  const int64_t B = sh.batch, T = sh.time, H = sh.hidden, D = sh.dirs;
  const at::Tensor go = bwd_grad_out(grad_out, x, {B, T, D * H}, op);
  check_like(grad_h_n, x, op, "grad_h_n", "x");
  check_shape(grad_h_n, {D, B, H}, op, "grad_h_n");
  check_like(grad_c_n, x, op, "grad_c_n", "x");
  check_shape(grad_c_n, {D, B, H}, op, "grad_c_n");
  const Plan p = make_plan(a.lengths, B, T, D, op);
  lstm_check_workspace(gates, states, sh, p.total, x, op, /*multiplicative=*/true);
  auto opts = a.x.options();
  auto grad_x = cpu_output({B, T, sh.input}, opts);
  std::vector<at::Tensor> grad_w(weights.size());
  for (size_t k = 0; k < weights.size(); ++k) grad_w[k] = at::zeros(weights[k].sizes(), opts);
  auto grad_h0 = at::empty({D, B, H}, opts);
  auto grad_c0 = at::empty({D, B, H}, opts);
  if (B == 0) return {grad_x, grad_w, grad_h0, grad_c0};
  const at::Tensor ghn = grad_h_n.contiguous(), gcn = grad_c_n.contiguous();
  const at::Tensor gw = gates.contiguous(), st = states.contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, a.x.scalar_type(), "mlstm_bwd_cpu", [&] {
    mlstm_bwd_impl<scalar_t>(a, p, go, ghn, gcn, gw, st, grad_x, grad_w, grad_h0, grad_c0);
  });
  return {grad_x, grad_w, grad_h0, grad_c0};
}

}  // namespace

TORCH_LIBRARY_IMPL(sublocal, CPU, m) {
  m.impl("lstm_fwd", &lstm_fwd_cpu);
  m.impl("lstm_bwd", &lstm_bwd_cpu);
  m.impl("lstm_infer", &infer_cpu<false>);
  m.impl("mlstm_fwd", &mlstm_fwd_cpu);
  m.impl("mlstm_bwd", &mlstm_bwd_cpu);
  m.impl("mlstm_infer", &infer_cpu<true>);
}

}  // namespace sublocal
