// The packed schedule of the CPU LSTM family: which rows run at each step, and how the work is
// split over threads. Shared by forward.cpp and backward.cpp.
//
// The batch is sorted by length (descending) once per call, so the sequences still running at
// step s are always a prefix of the sorted order (PackedSequence's layout), and the saved
// workspace is packed time-major over that order: step s of the sequence ranked i is row
// offsets[s] + i. Each step's work is one contiguous block of rows, and nothing is computed for
// padding.
//
// Two ways to share the work between threads:
// - tiles (the default): work items are (direction, tile of the sorted batch); each walks its
//   own time loop with no synchronisation between steps, so with 2 threads the two directions
//   run side by side, each issuing single-threaded GEMMs of the whole active batch (MKL runs
//   sequentially inside an OpenMP parallel region). With more threads than directions the
//   sorted batch is split into tiles of equal total length, one time loop each.
// - units (the mLSTM at large H): every thread owns a slice of the hidden units for the whole
//   active batch and the team meets at barriers (Team below). With batch tiles every thread
//   runs the recurrent GEMMs over all H units for its own rows, so each thread streams all of
//   W_hh and W_mh at every step: 72 MB of float32 at UniRep's H = 1900, which no cache holds.
//   With unit slices it multiplies by its rows of W_mh and its four gate blocks of W_hh only, so
//   the weights stream once per step whatever the thread count, and the GEMMs keep the whole
//   batch as their M. Directions run one after the other, each on the whole team.
#pragma once

#include <ATen/Parallel.h>
#include <ATen/core/LegacyTypeDispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/full.h>
#include <ATen/ops/zeros.h>

#include <algorithm>
#include <atomic>
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
#include "lstm.h"

namespace sublocal::lstm_cpu {

struct Plan {
  std::vector<int64_t> order;      // rank -> batch index, longest first (stable)
  std::vector<int64_t> len;        // rank -> length
  std::vector<int64_t> active;     // active[s]: sequences still running at step s (a prefix of ranks)
  std::vector<int64_t> offsets;    // offsets[s]: first packed row of step s; offsets[max_len] = total
  std::vector<int64_t> tile_start; // tiles of ranks, tile k = [tile_start[k], tile_start[k + 1])
  int64_t max_len = 0, total = 0;

  int64_t tiles() const { return static_cast<int64_t>(tile_start.size()) - 1; }
  // Ranks of tile k still running at step s, counted from the tile's first: [0, n).
  int64_t running(int64_t s, int64_t i0, int64_t i1) const {
    return s < max_len ? std::max<int64_t>(std::min(active[s], i1) - i0, 0) : 0;
  }
};

// lengths: int64 from lstm_prepare, or undefined (every sequence has length T).
inline Plan make_plan(const at::Tensor& lengths, int64_t batch, int64_t time, int64_t dirs, const char* op) {
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

inline at::Tensor acc_tensor(const at::Tensor& t, at::ScalarType acc) {
  return t.scalar_type() == acc ? t : t.to(acc);
}

// LSTM: [W_ih | b_ih + b_hh | W_hh], (4H, C + has_bias + H) in the compute dtype. One GEMM per
// step with the row [x_t | 1 | h_{t-1}] gives the gates' pre-activations, projection included.
inline at::Tensor fused_weight(const LstmDirWeights& w, bool has_bias, at::ScalarType acc) {
  std::vector<at::Tensor> parts{acc_tensor(w.w_ih, acc)};
  if (has_bias) parts.push_back((acc_tensor(w.b_ih, acc) + acc_tensor(w.b_hh, acc)).unsqueeze(1));
  parts.push_back(acc_tensor(w.w_hh, acc));
  return at::cat(parts, 1);
}

// mLSTM: [W_ih | b_ih + b_hh ; W_mx | 0], (5H, C + has_bias) in the compute dtype: the input
// projections of the gates and of m, which do not depend on the recurrence.
inline at::Tensor mlstm_input_weight(const LstmDirWeights& w, bool has_bias, at::ScalarType acc) {
  at::Tensor top = acc_tensor(w.w_ih, acc), bottom = acc_tensor(w.w_mx, acc);
  if (has_bias) {
    top = at::cat({top, (acc_tensor(w.b_ih, acc) + acc_tensor(w.b_hh, acc)).unsqueeze(1)}, 1);
    bottom = at::cat({bottom, at::zeros({bottom.size(0), 1}, bottom.options())}, 1);
  }
  return at::cat({top, bottom}, 0);
}

// Runs body(item, d, i0, i1) for every work item of the batch-tiles schedule (direction d, ranks
// [i0, i1) of the sorted batch), in parallel. Each worker flushes subnormals and stays below
// autograd: OpenMP workers do not inherit the caller's thread-local dispatch state, and the
// weights may require grad.
template <typename Body>
void for_each_tile(const Plan& p, int64_t D, Body&& body) {
  const int64_t ntiles = p.tiles();
  at::parallel_for(0, D * ntiles, 1, [&](int64_t begin, int64_t end) {
    const FlushDenormalGuard flush;
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    for (int64_t item = begin; item < end; ++item) {
      body(item, item / ntiles, p.tile_start[item % ntiles], p.tile_start[item % ntiles + 1]);
    }
  });
}

// ---- the units schedule ----------------------------------------------------------------------

// Which schedule the mLSTM runs: SUBLOCAL_LSTM_SCHEDULE=units or =tiles forces one (tests,
// benchmarks); otherwise units when the recurrent weights (5 H^2 values) pass
// kUnitsWeightBytes, i.e. outgrow a core's L2 (with one thread too: inference then still gets
// the lanes of forward.cpp).
constexpr int64_t kUnitsWeightBytes = 2 << 20;

inline bool mlstm_use_units(int64_t H, int64_t elem_size) {
  const char* env = std::getenv("SUBLOCAL_LSTM_SCHEDULE");
  if (env != nullptr && std::strcmp(env, "units") == 0) return true;
  if (env != nullptr && std::strcmp(env, "tiles") == 0) return false;
  return 5 * H * H * elem_size >= kUnitsWeightBytes;
}

// Hidden units [first, second) of thread k of n: whole groups of 16 units (a 64-byte row of
// float32), split as evenly as the groups allow; a thread may get none when H is small.
inline std::pair<int64_t, int64_t> unit_slice(int64_t H, int k, int n) {
  const int64_t groups = (H + 15) / 16;
  return {std::min(H, groups * k / n * 16), std::min(H, groups * (k + 1) / n * 16)};
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

}  // namespace sublocal::lstm_cpu
