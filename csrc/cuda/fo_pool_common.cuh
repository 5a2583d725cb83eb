// fo-pool CUDA C++: pieces shared by the forward and backward kernels.
//
// A block owns one (sequence, 32-channel tile) and walks its sequence in tiles of 32 steps.
// Each tile is loaded coalesced (a row is 32 consecutive channels of one step) into shared
// memory; each warp then scans 4 channels, lane i holding step i, with a 5-round shuffle scan
// of affine maps, carrying the state from tile to tile in a register. Rows are padded to 33
// words so a warp reading one channel's column hits 32 different banks.
#pragma once

#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "../fo_pool.h"

namespace sublocal {
namespace fo_pool_cuda {

constexpr int kTile = 32;                          // steps per tile = warp width = checkpoint interval
constexpr int kWarps = 8;                          // warps per block
constexpr int kChannelsPerWarp = kTile / kWarps;   // 4
constexpr int kThreads = kWarps * 32;

__device__ __forceinline__ int64_t clamp_length(const int64_t* lengths, int64_t b, int64_t T) {
  if (lengths == nullptr) return T;
  const int64_t L = lengths[b];
  return L < 0 ? 0 : (L > T ? T : L);
}

// Time index of step s: forward s, reverse L - 1 - s.
__device__ __forceinline__ int64_t time_of(int64_t s, int64_t L, bool reverse) {
  return reverse ? L - 1 - s : s;
}

// Inclusive scan over lanes of the maps x -> a x + b, earlier lanes applied first.
template <typename acc_t>
__device__ __forceinline__ void warp_scan_affine(acc_t& a, acc_t& b, int lane) {
#pragma unroll
  for (int off = 1; off < 32; off <<= 1) {
    const acc_t a_up = __shfl_up_sync(0xffffffffu, a, off);
    const acc_t b_up = __shfl_up_sync(0xffffffffu, b, off);
    if (lane >= off) {
      b = a * b_up + b;
      a = a * a_up;
    }
  }
}

// The same scan from the last lane down: lane i ends with the composition of its map and all
// later lanes' maps, later lanes applied first (e_i = a_i e_{i+1} + b_i).
template <typename acc_t>
__device__ __forceinline__ void warp_scan_affine_reverse(acc_t& a, acc_t& b, int lane) {
#pragma unroll
  for (int off = 1; off < 32; off <<= 1) {
    const acc_t a_dn = __shfl_down_sync(0xffffffffu, a, off);
    const acc_t b_dn = __shfl_down_sync(0xffffffffu, b, off);
    if (lane + off < 32) {
      b = a * b_dn + b;
      a = a * a_dn;
    }
  }
}

inline int64_t num_blocks(const FoPoolShape& p) { return p.batch * ((p.dim + kTile - 1) / kTile); }

inline void check_chunk(int64_t chunk, const char* op) {
  TORCH_CHECK(chunk == kTile, op, ": the CUDA C++ kernel keeps a checkpoint every ", kTile,
              " steps; `chunk` must be ", kTile, ", got ", chunk);
}

}  // namespace fo_pool_cuda
}  // namespace sublocal
