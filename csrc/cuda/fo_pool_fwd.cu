// fo-pool forward, CUDA C++ (selected with SUBLOCAL_FO_POOL_BACKEND=cuda; Triton is the default).
#include <ATen/Dispatch.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include "fo_pool_common.cuh"

namespace sublocal {
namespace fo_pool_cuda {
namespace {

template <typename scalar_t, bool HAS_OUTPUT>
__global__ void __launch_bounds__(kThreads)
fo_pool_fwd_kernel(FoPoolShape p, const scalar_t* __restrict__ F, const scalar_t* __restrict__ Z,
                   const scalar_t* __restrict__ O, const int64_t* __restrict__ lengths,
                   const scalar_t* __restrict__ init, scalar_t* __restrict__ H,
                   scalar_t* __restrict__ c_last, at::opmath_type<scalar_t>* __restrict__ ckpt) {
  using acc_t = at::opmath_type<scalar_t>;
  __shared__ acc_t s_a[kTile][kTile + 1];  // f, then nothing
  __shared__ acc_t s_c[kTile][kTile + 1];  // z, then the states c
  const int64_t T = p.time, D = p.dim, NC = p.num_checkpoints;
  const int64_t d_tiles = (D + kTile - 1) / kTile;
  const int64_t b = blockIdx.x / d_tiles;
  const int64_t d0 = (blockIdx.x % d_tiles) * kTile;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t L = clamp_length(lengths, b, T);
  const int64_t base = b * T * D;

  acc_t carry[kChannelsPerWarp];
#pragma unroll
  for (int j = 0; j < kChannelsPerWarp; ++j) {
    const int64_t d = d0 + warp * kChannelsPerWarp + j;
    carry[j] = (init != nullptr && d < D) ? static_cast<acc_t>(init[b * D + d]) : acc_t(0);
  }

  for (int64_t s0 = 0; s0 < L; s0 += kTile) {
    const int64_t k = s0 / kTile;
#pragma unroll
    for (int j = 0; j < kChannelsPerWarp; ++j) {
      const int64_t d = d0 + warp * kChannelsPerWarp + j;
      if (lane == j && d < D) ckpt[(b * NC + k) * D + d] = carry[j];
    }
    // Coalesced load: warp w loads rows w, w + 8, w + 16, w + 24 of the tile.
    const int64_t d = d0 + lane;
#pragma unroll
    for (int r = 0; r < kTile / kWarps; ++r) {
      const int row = warp + kWarps * r;
      const int64_t s = s0 + row;
      const bool valid = s < L && d < D;
      const int64_t off = base + time_of(s, L, p.reverse) * D + d;
      s_a[row][lane] = valid ? static_cast<acc_t>(F[off]) : acc_t(1);
      s_c[row][lane] = valid ? static_cast<acc_t>(Z[off]) : acc_t(0);
    }
    __syncthreads();
#pragma unroll
    for (int j = 0; j < kChannelsPerWarp; ++j) {
      const int col = warp * kChannelsPerWarp + j;
      acc_t a = s_a[lane][col];
      acc_t bb = (acc_t(1) - a) * s_c[lane][col];
      warp_scan_affine(a, bb, lane);
      const acc_t c = a * carry[j] + bb;
      carry[j] = __shfl_sync(0xffffffffu, c, 31);
      s_c[lane][col] = c;  // only this warp touches column col
    }
    __syncthreads();
#pragma unroll
    for (int r = 0; r < kTile / kWarps; ++r) {
      const int row = warp + kWarps * r;
      const int64_t s = s0 + row;
      if (s < L && d < D) {
        const int64_t off = base + time_of(s, L, p.reverse) * D + d;
        const acc_t c = s_c[row][lane];
        if constexpr (HAS_OUTPUT) {
          H[off] = static_cast<scalar_t>(static_cast<acc_t>(O[off]) * c);
        } else {
          H[off] = static_cast<scalar_t>(c);
        }
      }
    }
    __syncthreads();
  }

#pragma unroll
  for (int j = 0; j < kChannelsPerWarp; ++j) {
    const int64_t d = d0 + warp * kChannelsPerWarp + j;
    if (lane == j && d < D) {
      c_last[b * D + d] = static_cast<scalar_t>(carry[j]);
      for (int64_t k = (L + kTile - 1) / kTile; k < NC; ++k) ckpt[(b * NC + k) * D + d] = carry[j];
    }
  }
  // Padded positions hold zeros.
  const int64_t d = d0 + lane;
  if (d < D) {
    for (int64_t t = L + warp; t < T; t += kWarps) H[base + t * D + d] = scalar_t(0);
  }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> fo_pool_fwd_cuda(
    const at::Tensor& forget, const at::Tensor& z, const std::optional<at::Tensor>& output,
    const std::optional<at::Tensor>& lengths, const std::optional<at::Tensor>& initial, bool reverse,
    int64_t chunk) {
  check_chunk(chunk, "sublocal::_fo_pool_fwd_cuda");
  auto a = fo_pool_fwd_prepare(forget, z, output, lengths, initial, reverse, chunk);
  const auto& p = a.shape;
  const c10::cuda::CUDAGuard guard(a.forget.device());
  auto h = at::empty({p.batch, p.time, p.dim}, a.forget.options());
  auto c_last = at::empty({p.batch, p.dim}, a.forget.options());
  auto ckpt = at::empty({p.batch, p.num_checkpoints, p.dim},
                        a.forget.options().dtype(state_dtype(a.forget.scalar_type())));
  const int64_t blocks = num_blocks(p);
  if (blocks == 0) return {h, c_last, ckpt};
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, a.forget.scalar_type(), "fo_pool_fwd_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* O = p.has_output ? a.output.data_ptr<scalar_t>() : nullptr;
    const int64_t* L = p.has_lengths ? a.lengths.data_ptr<int64_t>() : nullptr;
    const scalar_t* I = p.has_initial ? a.initial.data_ptr<scalar_t>() : nullptr;
    auto kernel = p.has_output ? fo_pool_fwd_kernel<scalar_t, true> : fo_pool_fwd_kernel<scalar_t, false>;
    kernel<<<blocks, kThreads, 0, stream>>>(p, a.forget.data_ptr<scalar_t>(), a.z.data_ptr<scalar_t>(), O, L, I,
                                            h.data_ptr<scalar_t>(), c_last.data_ptr<scalar_t>(),
                                            ckpt.data_ptr<acc_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {h, c_last, ckpt};
}

}  // namespace
}  // namespace fo_pool_cuda

TORCH_LIBRARY_IMPL(sublocal, CUDA, m) { m.impl("_fo_pool_fwd_cuda", &fo_pool_cuda::fo_pool_fwd_cuda); }

}  // namespace sublocal
