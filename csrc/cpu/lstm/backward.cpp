// The CPU LSTM family's fused backward: one implementation for both cells (cell.h), over the
// forward's workspace (csrc/lstm.h).
//
// Per step in reverse: the cell's gradient for the block of rows, then the gradient reaching
// h_{s-1}:
// - LSTM: dh_{s-1} = dgates W_hh, one GEMM on the active rows;
// - mLSTM: dm = dgates W_hh; through m = mx * mh: dmx = dm * mh, dmh = dm * mx; then
//   dh_{s-1} = dmh W_mh.
// The weight and input gradients are not per step: they are GEMMs over chunks of kChunkRows
// (step, sequence) rows, so they stay large matrix products while reading rows the step loop
// has just written, instead of first storing an (N, 4H) gradient tensor (650 MB at `paper`):
// - LSTM: [dW_ih | db | dW_hh] += dgates^T [x | 1 | h_prev], dx = dgates W_ih;
// - mLSTM: [dW_ih | db ; dW_mx | -] += [dgates | dmx]^T [x | 1], dW_hh += dgates^T m,
//   dW_mh += dmh^T h_{t-1}, dx = [dgates | dmx] [W_ih ; W_mx].
// Schedules as the forward's (schedule.h): batch tiles, or units for the mLSTM at large H.
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
#include <vector>

#include "cpu/fp_mode.h"
#include "cpu/output_cache.h"
#include "cpu/lstm/schedule.h"
// last: its no-trapping-math pragma applies to this file's functions only
#include "cpu/lstm/cell.h"

namespace sublocal::lstm_cpu {
namespace {

// The cell's backward over n rows, units [j0, j0 + nj), with one clone per vector ISA.
SUBLOCAL_VECTOR_CLONES
void cell_bwd(int64_t n, int64_t H, int64_t j0, int64_t nj, const float* act, int64_t as, const float* state,
              int64_t ss, const float* cprev, int64_t cps, const float* dh, float* dc, float* dgates, int64_t dgs) {
  cell_bwd_block(n, H, j0, nj, act, as, state, ss, cprev, cps, dh, dc, dgates, dgs);
}

void cell_bwd(int64_t n, int64_t H, int64_t j0, int64_t nj, const double* act, int64_t as, const double* state,
              int64_t ss, const double* cprev, int64_t cps, const double* dh, double* dc, double* dgates,
              int64_t dgs) {
  cell_bwd_block(n, H, j0, nj, act, as, state, ss, cprev, cps, dh, dc, dgates, dgs);
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
    acc_t* HP = hp.data_ptr<acc_t>();
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
          cell_bwd(n, H, j0, nj, Gp + row * 5 * H, 5 * H, Sp + row * 3 * H, 3 * H, cprev, s == 0 ? H : 3 * H, dhp, dcp,
                   dG + rows * 5 * H, 5 * H);
        });
        prev_n = n;
        team.barrier();  // every unit's dgates of this step
        team.run([&] {
          if (nj == 0) return;
          at::Tensor dmj = dm.narrow(0, 0, n).narrow(1, j0, nj);
          at::mm_out(dmj, dg.narrow(0, rows, n).narrow(1, 0, 4 * H), whh.narrow(1, j0, nj));
          mlstm_product_bwd(n, H, j0, j1, dm.data_ptr<acc_t>(), Gp + row * 5 * H + 4 * H, 5 * H,
                            Sp + row * 3 * H + 2 * H, 3 * H, dG + rows * 5 * H, 5 * H,
                            dmh.data_ptr<acc_t>() + rows * H, mb.data_ptr<acc_t>() + rows * H);
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

// The backward of either cell. Weight-gradient accumulators, one per work item (direction,
// tile; one per direction in the units schedule), in the compute dtype:
// - LSTM: dw[0] = [dW_ih | db | dW_hh]^T, (K, 4H) with K = C + bias + H. The chunk GEMM is
//   dW^T += z^T dgates, which MKL ran 13-26% faster than dW += dgates^T z (1024-4096 rows,
//   H=256, C=60, one thread, the 2-core EPYC: 8.5 vs 9.8 ms at 1024 rows); the sum over rows is
//   the same, its order MKL's.
// - mLSTM: dw[0] = [dW_ih | db ; dW_mx | -] (5H, C + bias), dw[1] = dW_hh (4H, H),
//   dw[2] = dW_mh (H, H).
template <typename Cell, typename scalar_t>
void backward_pass(const LstmArgs& a, const Plan& p, const at::Tensor& grad_out, const at::Tensor& grad_h_n,
                   const at::Tensor& grad_c_n, const at::Tensor& gates, const at::Tensor& states, at::Tensor& grad_x,
                   std::vector<at::Tensor>& grad_w, at::Tensor& grad_h0, at::Tensor& grad_c0) {
  using acc_t = at::opmath_type<scalar_t>;
  constexpr bool kMul = Cell::kMultiplicative;
  const auto& sh = a.shape;
  const int64_t B = sh.batch, T = sh.time, C = sh.input, H = sh.hidden, D = sh.dirs;
  const int64_t gs = Cell::kGateCols * H, ss = Cell::kStateCols * H;
  // z rows: LSTM [x | 1 | h_prev], mLSTM [x | 1] (its h_prev rows go to their own buffer).
  const int64_t hb = sh.has_bias ? 1 : 0, K = kMul ? C + hb : C + hb + H, ho = C + hb;
  const auto acc = gates.scalar_type();
  const auto aopts = gates.options();
  const bool units = kMul && mlstm_use_units(H, static_cast<int64_t>(sizeof(acc_t)));
  const int64_t ntiles = units ? 1 : p.tiles();
  auto dh = at::empty({D, B, H}, aopts);  // gradient reaching h_s, rank order
  auto dc = at::empty({D, B, H}, aopts);  // gradient reaching c_s, rank order
  std::vector<at::Tensor> dw;
  if constexpr (kMul) {
    dw = {at::zeros({D * ntiles, 5 * H, K}, aopts), at::zeros({D * ntiles, 4 * H, H}, aopts),
          at::zeros({D * ntiles, H, H}, aopts)};
  } else {
    dw = {at::zeros({D * ntiles, K, 4 * H}, aopts)};
  }
  auto dx = cpu_output({D, B, T, C}, aopts);  // per direction; padding rows unwritten (gather_input_grad)
  // win: the input weights dx multiplies by, LSTM W_ih, mLSTM [W_ih ; W_mx].
  at::Tensor win[2], whh[2], wmh[2], h0s[2], c0s[2];
  for (int64_t d = 0; d < D; ++d) {
    whh[d] = acc_tensor(a.w[d].w_hh, acc);
    if constexpr (kMul) {
      win[d] = mlstm_input_weight(a.w[d], sh.has_bias, acc).narrow(1, 0, C);
      wmh[d] = acc_tensor(a.w[d].w_mh, acc);
    } else {
      win[d] = acc_tensor(a.w[d].w_ih, acc);
    }
    h0s[d] = sorted_state<scalar_t, acc_t>(a.h0, p, d, H, aopts);
    c0s[d] = sorted_state<scalar_t, acc_t>(a.c0, p, d, H, aopts);
  }
  const scalar_t* X = a.x.data_ptr<scalar_t>();
  const scalar_t* dO = grad_out.defined() ? grad_out.data_ptr<scalar_t>() : nullptr;  // null: zeros
  const scalar_t* dHn = grad_h_n.data_ptr<scalar_t>();
  const scalar_t* dCn = grad_c_n.data_ptr<scalar_t>();
  if constexpr (kMul) {
    for (int64_t d = 0; units && d < D; ++d) {
      MlstmUnitsBwd<scalar_t>{a,     p,     d,     win[d], whh[d], wmh[d], h0s[d], c0s[d], gates[d], states[d],
                              dh[d], dc[d], dw[0][d], dw[1][d], dw[2][d], dx[d].data_ptr<acc_t>(), dO, dHn, dCn}
          .run(aopts);
    }
  }
  if (!units) for_each_tile(p, D, [&](int64_t item, int64_t d, int64_t i0, int64_t i1) {
    const int64_t nt = i1 - i0, cap = kChunkRows + nt;
    const acc_t* Gp = gates[d].data_ptr<acc_t>();
    const acc_t* Sp = states[d].data_ptr<acc_t>();
    at::Tensor dhd = dh[d];
    acc_t* dhp = dhd.data_ptr<acc_t>();
    acc_t* dcp = dc[d].data_ptr<acc_t>();
    acc_t* dxp = dx[d].data_ptr<acc_t>();
    // A chunk of steps: the dgates rows, the matching z rows, and where each row's dx goes
    // (flat (b, t) index); for the mLSTM also m, dmh and h_prev rows, and one step's dm.
    at::Tensor dg = cpu_output({cap, gs}, aopts), z = at::empty({cap, K}, aopts);
    at::Tensor mb, dmh, hp, dm;
    if constexpr (kMul) {
      mb = at::empty({cap, H}, aopts);
      dmh = at::empty({cap, H}, aopts);
      hp = at::empty({cap, H}, aopts);
      dm = at::empty({nt, H}, aopts);
    }
    at::Tensor dxc = at::empty({cap, C}, aopts);
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
        const acc_t* hprev = s == 0 ? h0s[d].data_ptr<acc_t>() + i * H : Sp + (p.offsets[s - 1] + i) * ss + H;
        if constexpr (kMul) {
          std::copy_n(hprev, H, hp.data_ptr<acc_t>() + (rows + r) * H);
        } else {
          std::copy_n(hprev, H, zr + ho);
        }
        where[rows + r] = bt;
      }
      const acc_t* cprev = s == 0 ? c0s[d].data_ptr<acc_t>() + i0 * H : Sp + (p.offsets[s - 1] + i0) * ss;
      cell_bwd(n, H, 0, H, Gp + row * gs, gs, Sp + row * ss, ss, cprev, s == 0 ? H : ss, dhp + i0 * H, dcp + i0 * H,
               dG + rows * gs, gs);
      at::Tensor dh_rows = dhd.narrow(0, i0, n);
      if constexpr (kMul) {
        at::Tensor dmn = dm.narrow(0, 0, n);
        at::mm_out(dmn, dg.narrow(0, rows, n).narrow(1, 0, 4 * H), whh[d]);
        mlstm_product_bwd(n, H, 0, H, dm.data_ptr<acc_t>(), Gp + row * gs + 4 * H, gs, Sp + row * ss + 2 * H, ss,
                          dG + rows * gs, gs, dmh.data_ptr<acc_t>() + rows * H, mb.data_ptr<acc_t>() + rows * H);
        at::mm_out(dh_rows, dmh.narrow(0, rows, n), wmh[d]);
      } else {
        at::mm_out(dh_rows, dg.narrow(0, rows, n), whh[d]);
      }
      rows += n;
      if (rows >= kChunkRows || s == 0) {
        const at::Tensor dgc = dg.narrow(0, 0, rows);
        if constexpr (kMul) {
          dw[0][item].addmm_(dgc.t(), z.narrow(0, 0, rows));
          dw[1][item].addmm_(dgc.narrow(1, 0, 4 * H).t(), mb.narrow(0, 0, rows));
          dw[2][item].addmm_(dmh.narrow(0, 0, rows).t(), hp.narrow(0, 0, rows));
        } else {
          dw[0][item].addmm_(z.narrow(0, 0, rows).t(), dgc);
        }
        at::Tensor dxr = dxc.narrow(0, 0, rows);
        at::mm_out(dxr, dgc, win[d]);
        const acc_t* src = dxc.data_ptr<acc_t>();
        for (int64_t q = 0; q < rows; ++q) std::copy_n(src + q * C, C, dxp + where[q] * C);
        rows = 0;
      }
    }
  });
  // The weight gradients in nn.LSTM's order per direction (lstm.h), summed over work items.
  const auto out_dtype = a.x.scalar_type();
  const auto sum_items = [&](const at::Tensor& t, int64_t d) { return t.narrow(0, d * ntiles, ntiles).sum(0); };
  // Fresh contiguous copies (a slice can already be contiguous, e.g. the bias row).
  const auto owned = [&](const at::Tensor& t) { return t.to(out_dtype, false, true, at::MemoryFormat::Contiguous); };
  const int64_t per = (kMul ? 4 : 2) + (sh.has_bias ? 2 : 0);
  for (int64_t d = 0; d < D; ++d) {
    at::Tensor* gw = grad_w.data() + d * per;
    if constexpr (kMul) {
      const at::Tensor mx = sum_items(dw[0], d);
      gw[0] = mx.narrow(0, 0, 4 * H).narrow(1, 0, C).to(out_dtype).contiguous();
      gw[1] = sum_items(dw[1], d).to(out_dtype).contiguous();
      if (sh.has_bias) {
        gw[2] = mx.narrow(0, 0, 4 * H).select(1, C).to(out_dtype).contiguous();
        gw[3] = gw[2].clone();
      }
      gw[per - 2] = mx.narrow(0, 4 * H, H).narrow(1, 0, C).to(out_dtype).contiguous();
      gw[per - 1] = sum_items(dw[2], d).to(out_dtype).contiguous();
    } else {
      const at::Tensor m = sum_items(dw[0], d);
      gw[0] = owned(m.narrow(0, 0, C).t());
      gw[1] = owned(m.narrow(0, ho, H).t());
      if (sh.has_bias) {
        gw[2] = owned(m.select(0, C));
        gw[3] = gw[2].clone();
      }
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

// sublocal::lstm_bwd and sublocal::mlstm_bwd.
template <typename Cell>
std::tuple<at::Tensor, std::vector<at::Tensor>, at::Tensor, at::Tensor> bwd_cpu(
    const std::optional<at::Tensor>& grad_out, const at::Tensor& grad_h_n, const at::Tensor& grad_c_n,
    const at::Tensor& x, const std::optional<at::Tensor>& lengths, at::TensorList weights,
    const std::optional<at::Tensor>& h0, const std::optional<at::Tensor>& c0, const at::Tensor& gates,
    const at::Tensor& states, bool bidirectional) {
  const char* op = Cell::kMultiplicative ? "sublocal::mlstm_bwd" : "sublocal::lstm_bwd";
  const LstmArgs a = lstm_prepare(x, lengths, weights, h0, c0, bidirectional, op, Cell::kMultiplicative);
  const auto& sh = a.shape;
  const int64_t B = sh.batch, T = sh.time, H = sh.hidden, D = sh.dirs;
  const at::Tensor go = bwd_grad_out(grad_out, x, {B, T, D * H}, op);
  check_like(grad_h_n, x, op, "grad_h_n", "x");
  check_shape(grad_h_n, {D, B, H}, op, "grad_h_n");
  check_like(grad_c_n, x, op, "grad_c_n", "x");
  check_shape(grad_c_n, {D, B, H}, op, "grad_c_n");
  const Plan p = make_plan(a.lengths, B, T, D, op);
  lstm_check_workspace(gates, states, sh, p.total, x, op, Cell::kMultiplicative);
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
    backward_pass<Cell, scalar_t>(a, p, go, ghn, gcn, gw, st, grad_x, grad_w, grad_h0, grad_c0);
  });
  return {grad_x, grad_w, grad_h0, grad_c0};
}

}  // namespace

TORCH_LIBRARY_IMPL(sublocal, CPU, m) {
  m.impl("lstm_bwd", &bwd_cpu<LstmCell>);
  m.impl("mlstm_bwd", &bwd_cpu<MlstmCell>);
}

}  // namespace sublocal::lstm_cpu
