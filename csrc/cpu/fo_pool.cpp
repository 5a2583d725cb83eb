// fo-pool on the CPU: forward and fused backward.
//
// Work items are (sequence, channel tile); each walks its sequence's valid steps in order,
// reading one contiguous run of the tile's channels per step, so the inner loops vectorise
// and every input row is streamed once. The backward recomputes the states of one chunk at a
// time from the forward's checkpoints (a chunk of 32 steps x 256 channels of f and z is 64 KB,
// L2-resident while it is walked in reverse), so it reads each input once and stores no
// (B, T, D) state tensor.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "fo_pool.h"

namespace sublocal {
namespace {

// Channel tile width: whole rows (one contiguous run of D elements per step) stream best;
// split rows only when there are too few sequences to give every thread several items.
int64_t pick_tile(int64_t batch, int64_t dim) {
  const int64_t want_items = 4 * static_cast<int64_t>(at::get_num_threads());
  int64_t tile = std::max<int64_t>(dim, 1);
  while (tile > 16 && batch * ((dim + tile - 1) / tile) < want_items) tile = (tile + 1) / 2;
  return tile;
}

void check_length_values(const at::Tensor& lengths, int64_t time, const char* op) {
  if (!lengths.defined()) return;
  const int64_t* l = lengths.data_ptr<int64_t>();
  for (int64_t b = 0; b < lengths.numel(); ++b) {
    TORCH_CHECK(l[b] >= 0 && l[b] <= time, op, ": `lengths[", b, "]` = ", l[b],
                " is out of range; each length must be in [0, T] = [0, ", time, "]");
  }
}

template <typename scalar_t, bool HAS_OUTPUT>
void fwd_kernel(const FoPoolShape& p, const scalar_t* F, const scalar_t* Z, const scalar_t* O,
                const int64_t* lengths, const scalar_t* init, scalar_t* H, scalar_t* c_last,
                at::opmath_type<scalar_t>* ckpt) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t T = p.time, D = p.dim, NC = p.num_checkpoints, chunk = p.chunk;
  const int64_t tile = pick_tile(p.batch, D);
  const int64_t ntiles = (D + tile - 1) / tile;
  at::parallel_for(0, p.batch * ntiles, 1, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> cbuf(tile);
    acc_t* c = cbuf.data();
    for (int64_t item = begin; item < end; ++item) {
      const int64_t b = item / ntiles, d0 = (item % ntiles) * tile, n = std::min(tile, D - d0);
      const int64_t L = lengths ? lengths[b] : T;
      for (int64_t d = 0; d < n; ++d) c[d] = init ? static_cast<acc_t>(init[b * D + d0 + d]) : acc_t(0);
      const int64_t base = b * T * D + d0;
      acc_t* ck = ckpt + b * NC * D + d0;
      for (int64_t s = 0; s < L; ++s) {
        if (s % chunk == 0) std::copy(c, c + n, ck + (s / chunk) * D);
        const int64_t off = base + (p.reverse ? L - 1 - s : s) * D;
        const scalar_t* f = F + off;
        const scalar_t* z = Z + off;
        scalar_t* h = H + off;
        for (int64_t d = 0; d < n; ++d) {
          const acc_t fd = static_cast<acc_t>(f[d]);
          c[d] = fd * c[d] + (acc_t(1) - fd) * static_cast<acc_t>(z[d]);
          if constexpr (HAS_OUTPUT) {
            h[d] = static_cast<scalar_t>(static_cast<acc_t>(O[off + d]) * c[d]);
          } else {
            h[d] = static_cast<scalar_t>(c[d]);
          }
        }
      }
      // Checkpoints at or past the end hold the final state.
      for (int64_t k = (L + chunk - 1) / chunk; k < NC; ++k) std::copy(c, c + n, ck + k * D);
      for (int64_t t = L; t < T; ++t) std::fill_n(H + base + t * D, n, scalar_t(0));
      for (int64_t d = 0; d < n; ++d) c_last[b * D + d0 + d] = static_cast<scalar_t>(c[d]);
    }
  });
}

// Gradients, walking each sequence's steps in reverse. q is the gradient reaching c_{s} from
// later steps (f_{s+1} * dc_{s+1}, or grad_c_last at the last valid step), so
//   dc_s = dh_s * o_s + q ;  df_s = dc_s (c_{s-1} - z_s) ;  dz_s = dc_s (1 - f_s) ;
//   do_s = dh_s c_s ;  q <- f_s dc_s ;  grad_initial = q after step 0.
template <typename scalar_t, bool HAS_OUTPUT>
void bwd_kernel(const FoPoolShape& p, const scalar_t* dH, const scalar_t* dC, const scalar_t* F,
                const scalar_t* Z, const scalar_t* O, const int64_t* lengths,
                const at::opmath_type<scalar_t>* ckpt, scalar_t* dF, scalar_t* dZ, scalar_t* dO,
                scalar_t* dInit) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t T = p.time, D = p.dim, NC = p.num_checkpoints, chunk = p.chunk;
  const int64_t tile = pick_tile(p.batch, D);
  const int64_t ntiles = (D + tile - 1) / tile;
  at::parallel_for(0, p.batch * ntiles, 1, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> qbuf(tile);
    std::vector<acc_t> states((std::min(chunk, std::max<int64_t>(T, 1)) + 1) * tile);
    acc_t* q = qbuf.data();
    for (int64_t item = begin; item < end; ++item) {
      const int64_t b = item / ntiles, d0 = (item % ntiles) * tile, n = std::min(tile, D - d0);
      const int64_t L = lengths ? lengths[b] : T;
      const int64_t base = b * T * D + d0;
      for (int64_t d = 0; d < n; ++d) q[d] = static_cast<acc_t>(dC[b * D + d0 + d]);
      for (int64_t t = L; t < T; ++t) {
        std::fill_n(dF + base + t * D, n, scalar_t(0));
        std::fill_n(dZ + base + t * D, n, scalar_t(0));
        if constexpr (HAS_OUTPUT) std::fill_n(dO + base + t * D, n, scalar_t(0));
      }
      for (int64_t k = (L - 1) / chunk; L > 0 && k >= 0; --k) {
        const int64_t s0 = k * chunk, m = std::min(chunk, L - s0);
        // states[i] = c_{s0 + i - 1}: states[0] is the checkpoint, states[i + 1] the state after step s0 + i.
        std::copy(ckpt + (b * NC + k) * D + d0, ckpt + (b * NC + k) * D + d0 + n, states.data());
        for (int64_t i = 0; i < m; ++i) {
          const int64_t s = s0 + i, off = base + (p.reverse ? L - 1 - s : s) * D;
          const acc_t* prev = states.data() + i * tile;
          acc_t* cur = states.data() + (i + 1) * tile;
          for (int64_t d = 0; d < n; ++d) {
            const acc_t fd = static_cast<acc_t>(F[off + d]);
            cur[d] = fd * prev[d] + (acc_t(1) - fd) * static_cast<acc_t>(Z[off + d]);
          }
        }
        for (int64_t i = m - 1; i >= 0; --i) {
          const int64_t s = s0 + i, off = base + (p.reverse ? L - 1 - s : s) * D;
          const acc_t* prev = states.data() + i * tile;
          const acc_t* cur = states.data() + (i + 1) * tile;
          for (int64_t d = 0; d < n; ++d) {
            const acc_t fd = static_cast<acc_t>(F[off + d]);
            const acc_t zd = static_cast<acc_t>(Z[off + d]);
            const acc_t dh = static_cast<acc_t>(dH[off + d]);
            acc_t e;
            if constexpr (HAS_OUTPUT) {
              e = dh * static_cast<acc_t>(O[off + d]) + q[d];
              dO[off + d] = static_cast<scalar_t>(dh * cur[d]);
            } else {
              e = dh + q[d];
            }
            dF[off + d] = static_cast<scalar_t>(e * (prev[d] - zd));
            dZ[off + d] = static_cast<scalar_t>(e * (acc_t(1) - fd));
            q[d] = fd * e;
          }
        }
      }
      for (int64_t d = 0; d < n; ++d) dInit[b * D + d0 + d] = static_cast<scalar_t>(q[d]);
    }
  });
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> fo_pool_fwd_cpu(
    const at::Tensor& forget, const at::Tensor& z, const std::optional<at::Tensor>& output,
    const std::optional<at::Tensor>& lengths, const std::optional<at::Tensor>& initial, bool reverse,
    int64_t chunk) {
  auto a = fo_pool_fwd_prepare(forget, z, output, lengths, initial, reverse, chunk);
  const auto& p = a.shape;
  check_length_values(a.lengths, p.time, "sublocal::fo_pool_fwd");
  auto h = at::empty({p.batch, p.time, p.dim}, a.forget.options());
  auto c_last = at::empty({p.batch, p.dim}, a.forget.options());
  auto ckpt = at::empty({p.batch, p.num_checkpoints, p.dim},
                        a.forget.options().dtype(state_dtype(a.forget.scalar_type())));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, a.forget.scalar_type(), "fo_pool_fwd_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* O = p.has_output ? a.output.data_ptr<scalar_t>() : nullptr;
    const int64_t* L = p.has_lengths ? a.lengths.data_ptr<int64_t>() : nullptr;
    const scalar_t* I = p.has_initial ? a.initial.data_ptr<scalar_t>() : nullptr;
    auto run = p.has_output ? fwd_kernel<scalar_t, true> : fwd_kernel<scalar_t, false>;
    run(p, a.forget.data_ptr<scalar_t>(), a.z.data_ptr<scalar_t>(), O, L, I, h.data_ptr<scalar_t>(),
        c_last.data_ptr<scalar_t>(), ckpt.data_ptr<acc_t>());
  });
  return {h, c_last, ckpt};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> fo_pool_bwd_cpu(
    const at::Tensor& grad_h, const at::Tensor& grad_c_last, const at::Tensor& forget,
    const at::Tensor& z, const std::optional<at::Tensor>& output,
    const std::optional<at::Tensor>& lengths, const at::Tensor& checkpoints, bool reverse,
    int64_t chunk) {
  auto a = fo_pool_bwd_prepare(grad_h, grad_c_last, forget, z, output, lengths, checkpoints, reverse, chunk);
  const auto& p = a.shape;
  check_length_values(a.lengths, p.time, "sublocal::fo_pool_bwd");
  auto opts = a.forget.options();
  auto grad_forget = at::empty({p.batch, p.time, p.dim}, opts);
  auto grad_z = at::empty({p.batch, p.time, p.dim}, opts);
  auto grad_output = p.has_output ? at::empty({p.batch, p.time, p.dim}, opts) : at::empty({0}, opts);
  auto grad_initial = at::empty({p.batch, p.dim}, opts);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, a.forget.scalar_type(), "fo_pool_bwd_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* O = p.has_output ? a.output.data_ptr<scalar_t>() : nullptr;
    scalar_t* dO = p.has_output ? grad_output.data_ptr<scalar_t>() : nullptr;
    const int64_t* L = p.has_lengths ? a.lengths.data_ptr<int64_t>() : nullptr;
    auto run = p.has_output ? bwd_kernel<scalar_t, true> : bwd_kernel<scalar_t, false>;
    run(p, a.grad_h.data_ptr<scalar_t>(), a.grad_c_last.data_ptr<scalar_t>(), a.forget.data_ptr<scalar_t>(),
        a.z.data_ptr<scalar_t>(), O, L, a.checkpoints.data_ptr<acc_t>(), grad_forget.data_ptr<scalar_t>(),
        grad_z.data_ptr<scalar_t>(), dO, grad_initial.data_ptr<scalar_t>());
  });
  return {grad_forget, grad_z, grad_output, grad_initial};
}

}  // namespace

TORCH_LIBRARY_IMPL(sublocal, CPU, m) {
  m.impl("fo_pool_fwd", &fo_pool_fwd_cpu);
  m.impl("fo_pool_bwd", &fo_pool_bwd_cpu);
}

}  // namespace sublocal
