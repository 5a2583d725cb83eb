// fo-pool backward, CUDA C++: tiles in reverse; each tile's states are rescanned from its
// checkpoint, then the gradient recurrence e_s = dh_s o_s + f_{s+1} e_{s+1} is scanned from the
// last lane down, with e carried from the later tile.
#include <ATen/Dispatch.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include "fo_pool_common.cuh"

namespace sublocal {
namespace fo_pool_cuda {
namespace {

template <typename scalar_t, bool HAS_OUTPUT>
__global__ void __launch_bounds__(kThreads)
fo_pool_bwd_kernel(FoPoolShape p, const scalar_t* __restrict__ dH, const scalar_t* __restrict__ dC,
                   const scalar_t* __restrict__ F, const scalar_t* __restrict__ Z,
                   const scalar_t* __restrict__ O, const int64_t* __restrict__ lengths,
                   const at::opmath_type<scalar_t>* __restrict__ ckpt, scalar_t* __restrict__ dF,
                   scalar_t* __restrict__ dZ, scalar_t* __restrict__ dO, scalar_t* __restrict__ dInit) {
  using acc_t = at::opmath_type<scalar_t>;
  __shared__ acc_t s_f[kTile][kTile + 1];   // f_s, then grad f
  __shared__ acc_t s_z[kTile][kTile + 1];   // z_s, then grad z
  __shared__ acc_t s_g[kTile][kTile + 1];   // dh_s, then grad o
  __shared__ acc_t s_fn[kTile][kTile + 1];  // f_{s+1} (1 past the end)
  __shared__ acc_t s_o[kTile][kTile + 1];   // o_s
  const int64_t T = p.time, D = p.dim, NC = p.num_checkpoints;
  const int64_t d_tiles = (D + kTile - 1) / kTile;
  const int64_t b = blockIdx.x / d_tiles;
  const int64_t d0 = (blockIdx.x % d_tiles) * kTile;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t L = clamp_length(lengths, b, T);
  const int64_t base = b * T * D;
  const int64_t d = d0 + lane;

  acc_t carry[kChannelsPerWarp];  // e of the first step of the later tile (grad_c_last past the end)
#pragma unroll
  for (int j = 0; j < kChannelsPerWarp; ++j) {
    const int64_t dj = d0 + warp * kChannelsPerWarp + j;
    carry[j] = dj < D ? static_cast<acc_t>(dC[b * D + dj]) : acc_t(0);
  }

  for (int64_t k = (L + kTile - 1) / kTile - 1; k >= 0; --k) {
    const int64_t s0 = k * kTile;
#pragma unroll
    for (int r = 0; r < kTile / kWarps; ++r) {
      const int row = warp + kWarps * r;
      const int64_t s = s0 + row;
      const bool valid = s < L && d < D;
      const int64_t off = base + time_of(s, L, p.reverse) * D + d;
      s_f[row][lane] = valid ? static_cast<acc_t>(F[off]) : acc_t(1);
      s_z[row][lane] = valid ? static_cast<acc_t>(Z[off]) : acc_t(0);
      s_g[row][lane] = valid ? static_cast<acc_t>(dH[off]) : acc_t(0);
      if constexpr (HAS_OUTPUT) s_o[row][lane] = valid ? static_cast<acc_t>(O[off]) : acc_t(0);
      const bool valid_next = s + 1 < L && d < D;
      s_fn[row][lane] = valid_next ? static_cast<acc_t>(F[base + time_of(s + 1, L, p.reverse) * D + d]) : acc_t(1);
    }
    __syncthreads();
#pragma unroll
    for (int j = 0; j < kChannelsPerWarp; ++j) {
      const int col = warp * kChannelsPerWarp + j;
      const int64_t dj = d0 + col;
      const acc_t c0 = dj < D ? ckpt[(b * NC + k) * D + dj] : acc_t(0);
      const acc_t f = s_f[lane][col], z = s_z[lane][col], dh = s_g[lane][col];
      // states: c_s (inclusive scan) and c_{s-1} (one lane up, the checkpoint at lane 0)
      acc_t a = f, bb = (acc_t(1) - f) * z;
      warp_scan_affine(a, bb, lane);
      const acc_t c = a * c0 + bb;
      acc_t c_prev = __shfl_up_sync(0xffffffffu, c, 1);
      if (lane == 0) c_prev = c0;
      // gradient recurrence, from the last lane down
      acc_t o = acc_t(1);
      if constexpr (HAS_OUTPUT) o = s_o[lane][col];
      acc_t ea = s_fn[lane][col], eb = dh * o;
      warp_scan_affine_reverse(ea, eb, lane);
      const acc_t e = ea * carry[j] + eb;
      carry[j] = __shfl_sync(0xffffffffu, e, 0);
      s_f[lane][col] = e * (c_prev - z);
      s_z[lane][col] = e * (acc_t(1) - f);
      s_g[lane][col] = dh * c;
    }
    __syncthreads();
#pragma unroll
    for (int r = 0; r < kTile / kWarps; ++r) {
      const int row = warp + kWarps * r;
      const int64_t s = s0 + row;
      if (s < L && d < D) {
        const int64_t off = base + time_of(s, L, p.reverse) * D + d;
        dF[off] = static_cast<scalar_t>(s_f[row][lane]);
        dZ[off] = static_cast<scalar_t>(s_z[row][lane]);
        if constexpr (HAS_OUTPUT) dO[off] = static_cast<scalar_t>(s_g[row][lane]);
      }
    }
    __syncthreads();
  }

#pragma unroll
  for (int j = 0; j < kChannelsPerWarp; ++j) {
    const int64_t dj = d0 + warp * kChannelsPerWarp + j;
    if (lane == j && dj < D) {
      const acc_t f0 = L > 0 ? static_cast<acc_t>(F[base + time_of(0, L, p.reverse) * D + dj]) : acc_t(1);
      dInit[b * D + dj] = static_cast<scalar_t>(f0 * carry[j]);
    }
  }
  if (d < D) {
    for (int64_t t = L + warp; t < T; t += kWarps) {
      dF[base + t * D + d] = scalar_t(0);
      dZ[base + t * D + d] = scalar_t(0);
      if constexpr (HAS_OUTPUT) dO[base + t * D + d] = scalar_t(0);
    }
  }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> fo_pool_bwd_cuda(
    const at::Tensor& grad_h, const at::Tensor& grad_c_last, const at::Tensor& forget,
    const at::Tensor& z, const std::optional<at::Tensor>& output,
    const std::optional<at::Tensor>& lengths, const at::Tensor& checkpoints, bool reverse,
    int64_t chunk) {
  check_chunk(chunk, "sublocal::_fo_pool_bwd_cuda");
  auto a = fo_pool_bwd_prepare(grad_h, grad_c_last, forget, z, output, lengths, checkpoints, reverse, chunk);
  const auto& p = a.shape;
  const c10::cuda::CUDAGuard guard(a.forget.device());
  auto opts = a.forget.options();
  auto grad_forget = at::empty({p.batch, p.time, p.dim}, opts);
  auto grad_z = at::empty({p.batch, p.time, p.dim}, opts);
  auto grad_output = p.has_output ? at::empty({p.batch, p.time, p.dim}, opts) : at::empty({0}, opts);
  auto grad_initial = at::empty({p.batch, p.dim}, opts);
  const int64_t blocks = num_blocks(p);
  if (blocks == 0) return {grad_forget, grad_z, grad_output, grad_initial};
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, a.forget.scalar_type(), "fo_pool_bwd_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* O = p.has_output ? a.output.data_ptr<scalar_t>() : nullptr;
    scalar_t* dO = p.has_output ? grad_output.data_ptr<scalar_t>() : nullptr;
    const int64_t* L = p.has_lengths ? a.lengths.data_ptr<int64_t>() : nullptr;
    auto kernel = p.has_output ? fo_pool_bwd_kernel<scalar_t, true> : fo_pool_bwd_kernel<scalar_t, false>;
    kernel<<<blocks, kThreads, 0, stream>>>(p, a.grad_h.data_ptr<scalar_t>(), a.grad_c_last.data_ptr<scalar_t>(),
                                            a.forget.data_ptr<scalar_t>(), a.z.data_ptr<scalar_t>(), O, L,
                                            a.checkpoints.data_ptr<acc_t>(), grad_forget.data_ptr<scalar_t>(),
                                            grad_z.data_ptr<scalar_t>(), dO, grad_initial.data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {grad_forget, grad_z, grad_output, grad_initial};
}

}  // namespace
}  // namespace fo_pool_cuda

TORCH_LIBRARY_IMPL(sublocal, CUDA, m) { m.impl("_fo_pool_bwd_cuda", &fo_pool_cuda::fo_pool_bwd_cuda); }

}  // namespace sublocal
