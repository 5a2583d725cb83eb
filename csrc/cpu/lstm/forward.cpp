// The CPU LSTM family's forward: one implementation for both cells (cell.h) and both uses,
// training (kTrain: the workspace of csrc/lstm.h is written for the backward) and inference
// (nothing kept: sublocal::lstm_infer, sublocal::mlstm_infer).
//
// Per step, the pre-activations of the active rows come from GEMMs, then the cell update runs
// vectorised over the block of rows:
// - LSTM: one ATen GEMM (MKL), [x_t | 1 | h_{t-1}] times [W_ih | b | W_hh]^T, the input
//   projection folded in. Folding it into the step's GEMM (K = C + 1 + H) measured 26% less CPU
//   time for the forward than one projection GEMM over all steps first (B=128, T=400, C=20,
//   H=256, 1 thread): the separate pass writes the whole (N, 4H) gate tensor once more and
//   reads it back from memory one step at a time.
// - mLSTM: the input projections [W_ih x + b | W_mx x] do not depend on the recurrence. Training
//   runs them as one GEMM per direction over all N valid rows, straight into the workspace;
//   inference, which has no (N, 5H) workspace, per step on the active rows. Per step only the
//   two dependent GEMMs run: mh = h_{t-1} W_mh^T (H x H), then gates += m W_hh^T (4H x H) with
//   m = mx * mh.
//
// Schedules (schedule.h): batch tiles for both cells; the units schedule for the mLSTM at large
// H, with lanes in inference (below).
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/TensorOperators.h>
#include <ATen/core/LegacyTypeDispatch.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/mm.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <tuple>
#include <utility>
#include <vector>

#include "cpu/fp_mode.h"
#include "cpu/output_cache.h"
#include "cpu/lstm/schedule.h"
// last: its no-trapping-math pragma applies to this file's functions only
#include "cpu/lstm/cell.h"

namespace sublocal::lstm_cpu {
namespace {

// The cell over n rows, units [j0, j0 + nj) (cell.h), with one clone per vector ISA.
SUBLOCAL_VECTOR_CLONES
void cell_fwd(int64_t n, int64_t H, int64_t j0, int64_t nj, float* gates, int64_t gs, const float* cprev, int64_t cps,
              float* state, int64_t ss) {
  cell_fwd_block(n, H, j0, nj, gates, gs, cprev, cps, state, ss);
}

void cell_fwd(int64_t n, int64_t H, int64_t j0, int64_t nj, double* gates, int64_t gs, const double* cprev,
              int64_t cps, double* state, int64_t ss) {
  cell_fwd_block(n, H, j0, nj, gates, gs, cprev, cps, state, ss);
}

// Inference with a mean pool: adds the H hidden values h of sequence b (direction d of D) to its
// float64 running sums in pool (B, D H), units [j0, j1); nothing when pool is null.
template <typename T>
inline void add_to_pool(double* pool, int64_t b, int64_t d, int64_t D, int64_t H, const T* h, int64_t j0,
                        int64_t j1) {
  if (pool == nullptr) return;
  double* acc = pool + (b * D + d) * H;
  for (int64_t j = j0; j < j1; ++j) acc[j] += static_cast<double>(h[j]);
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
  std::vector<int64_t> active;                                 // lanes still running at step s
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

// One direction of the mLSTM over the units schedule. kTrain: the rows are the workspace's
// (gates already holds the input projections [W_ih x + b | W_mx x] of every valid row, and
// keeps the activations; states gets [c | h | mh]). Otherwise (inference) one step's gates and
// two state buffers used in turn, the rows are lanes, and the input projection runs per step
// from wx (5H, C + bias). Two barriers per step: all of m_t must be written before any thread's
// gate GEMM reads it, and all of h_t before the next step's W_mh GEMM.
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
      at::Tensor z;                          // inference: this thread's copy of the step's [x | 1] rows
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
          mlstm_product(n, j0, j1, G.data_ptr<acc_t>() + 4 * H, 5 * H, S.data_ptr<acc_t>() + 2 * H, 3 * H, M, H);
        });
        team.barrier();  // m_t complete
        team.run([&] {
          if (nj == 0) return;
          for (int64_t q = 0; q < 4; ++q) {
            G.narrow(1, q * H + j0, nj).addmm_(m.narrow(0, 0, n), whh.narrow(0, q * H + j0, nj).t());
          }
          acc_t* Gp = G.data_ptr<acc_t>();
          acc_t* Sp = S.data_ptr<acc_t>();
          cell_fwd(n, H, j0, nj, Gp, 5 * H, cprev, cps, Sp, 3 * H);
          for (int64_t r = 0; r < n; ++r) {
            const auto [i, t] = kTrain ? std::pair<int64_t, int64_t>{r, s} : lanes.at(r, at_seq[r], s);
            const acc_t* c = Sp + r * 3 * H;
            const acc_t* h = c + H;
            const int64_t b = p.order[i];
            if (out != nullptr) {
              scalar_t* o = out + (b * T + time_of(d, t, p.len[i])) * D * H + d * H;
              for (int64_t j = j0; j < j1; ++j) o[j] = static_cast<scalar_t>(h[j]);
            }
            add_to_pool(pool, b, d, D, H, h, j0, j1);
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

// The batch-tiles schedule, either cell. kTrain: a step's rows are the workspace's (gates[d],
// states[d]). Otherwise a work item holds only its current step's gates, (tile rows, gates
// width), and the states of the previous and the current step, two (tile rows, state width)
// buffers used in turn, instead of the workspace (1.6 GB float32 at `paper`). Either way each
// sequence's h_n and c_n are written at its last step. For the LSTM, MKL's GEMM result depends
// on the output's address modulo 64 bytes (1-ulp differences measured at odd offsets), so each
// inference step's gate block starts where its rows would in the (64-byte aligned) workspace,
// and inference equals the training forward bit for bit. (The mLSTM's inference projects its
// inputs per step, a GEMM of other shapes, so it may differ from training in the last bits.)
template <typename Cell, bool kTrain, typename scalar_t>
void forward_tiles(const LstmArgs& a, const Plan& p, scalar_t* O, double* pool, scalar_t* HN, scalar_t* CN,
                   const at::Tensor& gates, const at::Tensor& states, const at::TensorOptions& aopts) {
  using acc_t = at::opmath_type<scalar_t>;
  constexpr bool kMul = Cell::kMultiplicative;
  const auto& sh = a.shape;
  const int64_t B = sh.batch, T = sh.time, C = sh.input, H = sh.hidden, D = sh.dirs;
  const int64_t gs = Cell::kGateCols * H, ss = Cell::kStateCols * H;
  // z rows: LSTM [x_t | 1 | h_{t-1}] for the step's one GEMM; mLSTM inference [x_t | 1] for the
  // step's input projection; mLSTM training none (its inputs are projected before the loop).
  const int64_t hb = sh.has_bias ? 1 : 0, K = kMul ? C + hb : C + hb + H, ho = C + hb;
  const bool use_z = !(kMul && kTrain);
  const auto acc = c10::typeMetaToScalarType(aopts.dtype());
  at::Tensor wz[2], whhT[2], wmhT[2], h0s[2], c0s[2];
  for (int64_t d = 0; d < D; ++d) {
    if constexpr (kMul) {
      if (!kTrain) wz[d] = mlstm_input_weight(a.w[d], sh.has_bias, acc).t();
      whhT[d] = acc_tensor(a.w[d].w_hh, acc).t();
      wmhT[d] = acc_tensor(a.w[d].w_mh, acc).t();
    } else {
      wz[d] = fused_weight(a.w[d], sh.has_bias, acc).t();
    }
    h0s[d] = sorted_state<scalar_t, acc_t>(a.h0, p, d, H, aopts);
    c0s[d] = sorted_state<scalar_t, acc_t>(a.c0, p, d, H, aopts);
  }
  const scalar_t* X = a.x.data_ptr<scalar_t>();
  for_each_tile(p, D, [&](int64_t /*item*/, int64_t d, int64_t i0, int64_t i1) {
    const int64_t nt = i1 - i0;
    constexpr int64_t kAlign = 64 / static_cast<int64_t>(sizeof(acc_t));
    const at::Tensor z = use_z ? at::empty({nt, K}, aopts) : at::Tensor();
    const at::Tensor G = kTrain ? gates[d] : at::empty({nt * gs + kAlign}, aopts);
    const at::Tensor m = kMul ? at::empty({nt, H}, aopts) : at::Tensor();
    const at::Tensor S = kTrain ? states[d] : at::empty({2, nt, ss}, aopts);
    acc_t* Z = use_z ? z.data_ptr<acc_t>() : nullptr;
    for (int64_t r = 0; use_z && r < nt; ++r) {
      if (hb) Z[r * K + C] = acc_t(1);
      if constexpr (!kMul) std::copy_n(h0s[d].data_ptr<acc_t>() + (i0 + r) * H, H, Z + r * K + ho);
    }
    for (int64_t s = 0; s < p.max_len; ++s) {
      const int64_t n = p.running(s, i0, i1);
      if (n <= 0) break;
      for (int64_t r = 0; use_z && r < n; ++r) {
        const int64_t i = i0 + r;
        const scalar_t* src = X + (p.order[i] * T + time_of(d, s, p.len[i])) * C;
        for (int64_t k = 0; k < C; ++k) Z[r * K + k] = static_cast<acc_t>(src[k]);
      }
      // This step's gate and state rows (g, cur), and the previous step's states (prev).
      const int64_t row = p.offsets[s] + i0;
      at::Tensor g, cur, prev;
      if constexpr (kTrain) {
        g = G.narrow(0, row, n);
        cur = S.narrow(0, row, n);
        if (s > 0) prev = S.narrow(0, p.offsets[s - 1] + i0, n);
      } else {
        const int64_t shift = kMul ? 0 : (d * p.total + row) * gs % kAlign;
        g = G.narrow(0, shift, n * gs).view({n, gs});
        cur = S[s % 2].narrow(0, 0, n);
        if (s > 0) prev = S[(s + 1) % 2].narrow(0, 0, n);
      }
      acc_t* Gp = g.data_ptr<acc_t>();
      acc_t* Sp = cur.data_ptr<acc_t>();
      if constexpr (kMul) {
        if constexpr (!kTrain) at::mm_out(g, z.narrow(0, 0, n), wz[d]);
        const at::Tensor hprev = s == 0 ? h0s[d].narrow(0, i0, n) : prev.narrow(1, H, H);
        at::Tensor mh = cur.narrow(1, 2 * H, H);
        at::mm_out(mh, hprev, wmhT[d]);
        mlstm_product(n, 0, H, Gp + 4 * H, gs, Sp + 2 * H, ss, m.data_ptr<acc_t>(), H);
        g.narrow(1, 0, 4 * H).addmm_(m.narrow(0, 0, n), whhT[d]);
      } else {
        at::mm_out(g, z.narrow(0, 0, n), wz[d]);
      }
      const acc_t* cprev = s == 0 ? c0s[d].data_ptr<acc_t>() + i0 * H : prev.data_ptr<acc_t>();
      cell_fwd(n, H, 0, H, Gp, gs, cprev, s == 0 ? H : ss, Sp, ss);
      for (int64_t r = 0; r < n; ++r) {
        const int64_t i = i0 + r;
        const acc_t* h = Sp + r * ss + H;
        if constexpr (!kMul) std::copy_n(h, H, Z + r * K + ho);
        add_to_pool(pool, p.order[i], d, D, H, h, 0, H);
        if (O == nullptr) continue;
        scalar_t* o = O + (p.order[i] * T + time_of(d, s, p.len[i])) * D * H + d * H;
        for (int64_t j = 0; j < H; ++j) o[j] = static_cast<scalar_t>(h[j]);
      }
      // Ranks [n_next, n) of the tile ran their last step now.
      for (int64_t r = p.running(s + 1, i0, i1); r < n; ++r) {
        const acc_t* c = Sp + r * ss;
        const int64_t b = p.order[i0 + r];
        for (int64_t j = 0; j < H; ++j) {
          CN[(d * B + b) * H + j] = static_cast<scalar_t>(c[j]);
          HN[(d * B + b) * H + j] = static_cast<scalar_t>(c[H + j]);
        }
      }
    }
  });
}

// mLSTM training: the input projections [W_ih x + b | W_mx x] of every valid step of direction
// d, [x | 1] gathered in packed order and one GEMM into the workspace's gate rows.
template <typename scalar_t>
void mlstm_project_inputs(const LstmArgs& a, const Plan& p, int64_t d, at::Tensor gates,
                          const at::TensorOptions& aopts) {
  using acc_t = at::opmath_type<scalar_t>;
  const auto& sh = a.shape;
  const int64_t T = sh.time, C = sh.input, hb = sh.has_bias ? 1 : 0, K = C + hb;
  const scalar_t* X = a.x.data_ptr<scalar_t>();
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
  at::mm_out(gates, xp, mlstm_input_weight(a.w[d], sh.has_bias, c10::typeMetaToScalarType(aopts.dtype())).t());
}

// The forward of either cell, training or inference: O the (B, T, D H) output or null, pool the
// (B, D H) float64 sums for a mean or null, HN and CN the final states; gates and states the
// workspace (training only).
template <typename Cell, bool kTrain, typename scalar_t>
void forward_pass(const LstmArgs& a, const Plan& p, scalar_t* O, double* pool, scalar_t* HN, scalar_t* CN,
             const at::Tensor& gates, const at::Tensor& states, const at::TensorOptions& aopts) {
  using acc_t = at::opmath_type<scalar_t>;
  const auto& sh = a.shape;
  if constexpr (Cell::kMultiplicative) {
    const int64_t D = sh.dirs, H = sh.hidden;
    if constexpr (kTrain) {
      for (int64_t d = 0; d < D; ++d) mlstm_project_inputs<scalar_t>(a, p, d, gates[d], aopts);
    }
    if (mlstm_use_units(H, static_cast<int64_t>(sizeof(acc_t)))) {
      const auto acc = c10::typeMetaToScalarType(aopts.dtype());
      for (int64_t d = 0; d < D; ++d) {
        const at::Tensor wx = kTrain ? at::Tensor() : mlstm_input_weight(a.w[d], sh.has_bias, acc);
        MlstmUnits<scalar_t, kTrain>{a,
                                     p,
                                     d,
                                     wx,
                                     acc_tensor(a.w[d].w_hh, acc),
                                     acc_tensor(a.w[d].w_mh, acc),
                                     sorted_state<scalar_t, acc_t>(a.h0, p, d, H, aopts),
                                     sorted_state<scalar_t, acc_t>(a.c0, p, d, H, aopts),
                                     kTrain ? gates[d] : at::Tensor(),
                                     kTrain ? states[d] : at::Tensor(),
                                     O,
                                     pool,
                                     HN,
                                     CN}
            .run(aopts);
      }
      zero_padding(O, p, sh.time, D * H);
      return;
    }
  }
  forward_tiles<Cell, kTrain, scalar_t>(a, p, O, pool, HN, CN, gates, states, aopts);
  zero_padding(O, p, sh.time, sh.dirs * sh.hidden);
}

// One call of sublocal::<cell>_fwd (kTrain) or sublocal::<cell>_infer: out, h_n, c_n, and the
// workspace for the backward (training; undefined in inference). mean (inference only): `out` is
// (B, D H) instead, each direction's hidden states averaged over the sequence's valid steps
// (summed in float64 as the steps run), and the (B, T, D H) sequence is never written: a pooled
// embedding of a 35,000-residue protein keeps no per-step state.
template <typename Cell, bool kTrain>
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> forward_call(
    const at::Tensor& x, const std::optional<at::Tensor>& lengths, at::TensorList weights,
    const std::optional<at::Tensor>& h0, const std::optional<at::Tensor>& c0, bool bidirectional, bool sequences,
    bool mean) {
  const char* op = Cell::kMultiplicative ? (kTrain ? "sublocal::mlstm_fwd" : "sublocal::mlstm_infer")
                                         : (kTrain ? "sublocal::lstm_fwd" : "sublocal::lstm_infer");
  const LstmArgs a = lstm_prepare(x, lengths, weights, h0, c0, bidirectional, op, Cell::kMultiplicative);
  const auto& sh = a.shape;
  const int64_t B = sh.batch, T = sh.time, H = sh.hidden, D = sh.dirs;
  const Plan p = make_plan(a.lengths, B, T, D, op);
  auto opts = a.x.options();
  auto aopts = opts.dtype(state_dtype(a.x.scalar_type()));
  auto out = sequences && !mean ? cpu_output({B, T, D * H}, opts) : at::empty({0}, opts);
  auto h_n = at::empty({D, B, H}, opts);
  auto c_n = at::empty({D, B, H}, opts);
  // One row per valid step (the fake kernel gives the row count a data-dependent size).
  at::Tensor gates, states;
  if constexpr (kTrain) {
    gates = cpu_output({D, p.total, Cell::kGateCols * H}, aopts);
    states = cpu_output({D, p.total, Cell::kStateCols * H}, aopts);
  }
  at::Tensor pool = mean ? at::zeros({B, D * H}, opts.dtype(at::kDouble)) : at::Tensor();
  if (B > 0) {
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, a.x.scalar_type(), "lstm_forward_cpu", [&] {
      scalar_t* O = out.dim() == 3 ? out.data_ptr<scalar_t>() : nullptr;  // null: no sequence output
      double* sums = mean ? pool.data_ptr<double>() : nullptr;
      forward_pass<Cell, kTrain, scalar_t>(a, p, O, sums, h_n.data_ptr<scalar_t>(), c_n.data_ptr<scalar_t>(), gates,
                                           states, aopts);
    });
  }
  if (mean) {
    at::Tensor steps = at::empty({B, 1}, opts.dtype(at::kDouble));
    double* st = steps.data_ptr<double>();
    for (int64_t i = 0; i < B; ++i) st[p.order[i]] = static_cast<double>(p.len[i]);
    out = pool.div_(steps).to(a.x.scalar_type());
  }
  return {out, h_n, c_n, gates, states};
}

template <typename Cell>
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> fwd_cpu(
    const at::Tensor& x, const std::optional<at::Tensor>& lengths, at::TensorList weights,
    const std::optional<at::Tensor>& h0, const std::optional<at::Tensor>& c0, bool bidirectional, bool sequences) {
  return forward_call<Cell, true>(x, lengths, weights, h0, c0, bidirectional, sequences, false);
}

template <typename Cell>
std::tuple<at::Tensor, at::Tensor, at::Tensor> infer_cpu(const at::Tensor& x, const std::optional<at::Tensor>& lengths,
                                                         at::TensorList weights, const std::optional<at::Tensor>& h0,
                                                         const std::optional<at::Tensor>& c0, bool bidirectional,
                                                         bool sequences, bool mean) {
  auto r = forward_call<Cell, false>(x, lengths, weights, h0, c0, bidirectional, sequences, mean);
  return {std::get<0>(r), std::get<1>(r), std::get<2>(r)};
}

}  // namespace

TORCH_LIBRARY_IMPL(sublocal, CPU, m) {
  m.impl("lstm_fwd", &fwd_cpu<LstmCell>);
  m.impl("lstm_infer", &infer_cpu<LstmCell>);
  m.impl("mlstm_fwd", &fwd_cpu<MlstmCell>);
  m.impl("mlstm_infer", &infer_cpu<MlstmCell>);
}

}  // namespace sublocal::lstm_cpu
