// fo-pool on the CPU: forward and fused backward.
//
// Work items are (sequence, channel tile); each walks its sequence's valid steps, one
// contiguous run of the tile's channels per step, so the inner loops vectorise and every
// input row is streamed from memory once. The backward recomputes the states of one chunk
// of steps at a time from the forward's checkpoints instead of reading a saved (B, T, D)
// state tensor. Large outputs come from output_cache.h (no page faults in steady state).
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "fo_pool.h"
#include "cpu/fp_mode.h"
#include "output_cache.h"

#if defined(__SSE2__)
#include <emmintrin.h>
#define SUBLOCAL_STREAM_STORES 1
#endif

namespace sublocal {
namespace {

// Streaming (non-temporal) stores for the large outputs. An ordinary store first reads its
// cache line from memory (write-allocate), so a (B, T, D) output costs twice its size in bus
// traffic; a streaming store writes the line without reading it. fo-pool moves 4 tensors per
// forward step (3 read, 1 written) and 7 per backward step (4 read, 3 written), so the plain
// stores alone were 25% and 43% more traffic than the floor counts. Streamed rows bypass the
// cache, which pays only when the output is far larger than the cache: below kStreamBytes the
// next op would have found it there. Measured at `rna` (B=8, T=30000, D=256, 2 threads, the
// shared 2-core EPYC VM, three interleaved pairs of processes, best of 15 calls each): forward
// 36.2-44.1 ms against 39.7-43.1 ms with plain stores, backward 84.2-116.6 against
// 81.4-104.7 ms: within this machine's noise, which swings the same call by a third.
constexpr int64_t kStreamBytes = int64_t{32} << 20;

template <typename T>
bool use_stream(int64_t elements) {
#if SUBLOCAL_STREAM_STORES
  return std::is_same_v<T, float> && elements * static_cast<int64_t>(sizeof(T)) >= kStreamBytes;
#else
  (void)elements;
  return false;
#endif
}

// Orders a thread's streaming stores before the parallel region's end (they are weakly ordered).
inline void stream_fence() {
#if SUBLOCAL_STREAM_STORES
  _mm_sfence();
#endif
}

// dst[0, n) = src[0, n): streamed when dst is 16-byte aligned, plain otherwise (the same bits).
inline void stream_row(int64_t n, const float* __restrict__ src, float* __restrict__ dst) {
  int64_t d = 0;
#if SUBLOCAL_STREAM_STORES
  if ((reinterpret_cast<uintptr_t>(dst) & 15) == 0) {
    for (; d + 4 <= n; d += 4) _mm_stream_ps(dst + d, _mm_loadu_ps(src + d));
  }
#endif
  for (; d < n; ++d) dst[d] = src[d];
}

// Channel tile width: whole rows (one contiguous run of D elements per step) stream best, so
// rows are split only until every thread has an item (B=1, D=256 on one thread: whole rows ran
// 2x faster than the 64-wide tiles that a "4 items per thread" rule gave), never below 64
// channels, and capped so one chunk's staging buffers stay in L2.
int64_t pick_tile(int64_t batch, int64_t dim) {
  const int64_t threads = static_cast<int64_t>(at::get_num_threads());
  int64_t tile = std::min<int64_t>(std::max<int64_t>(dim, 1), 512);
  while (tile > 64 && batch * ((dim + tile - 1) / tile) < threads) tile = (tile + 1) / 2;
  return tile;
}

// Memory is always streamed in ascending time order. The recurrence runs backwards in time for
// reverse=True and for the gradient, and reading rows in descending address order measured 5x
// slower than ascending here (reverse pass of the backward, B=1, T=30000, D=256, one thread,
// Xeon VM: 0.12 s vs 0.023 s): the prefetchers do not follow descending streams. So each chunk
// of rows is first copied (ascending) into small float buffers, the recurrence walks the
// buffers in whichever order it needs (L2-resident: 5 x 32 rows x 512 floats at most), and
// results are written back ascending.
// The row loops below take their rows as __restrict__ parameters: GCC 12 honours restrict on
// parameters but not on block-scope pointers, and without it the backward's first pass (nine
// pointers) was not vectorised at all (fopt-info: "control flow in loop"), running 1.5x slower.
template <typename In, typename Out>
inline void convert_row(int64_t n, const In* __restrict__ in, Out* __restrict__ out) {
  for (int64_t d = 0; d < n; ++d) out[d] = static_cast<Out>(in[d]);
}

template <typename scalar_t, typename acc_t>
inline void stage_rows(const scalar_t* src, int64_t row0, int64_t rows, int64_t D, int64_t n, acc_t* dst,
                       int64_t tile) {
  for (int64_t r = 0; r < rows; ++r) convert_row(n, src + (row0 + r) * D, dst + r * tile);
}

// One computed row out to a (B, T, D) tensor, streamed when `stream` (float32 only).
template <typename scalar_t, typename acc_t>
inline void put_row(int64_t n, const acc_t* __restrict__ src, scalar_t* __restrict__ dst, bool stream) {
  if constexpr (std::is_same_v<scalar_t, float> && std::is_same_v<acc_t, float>) {
    if (stream) {
      stream_row(n, src, dst);
      return;
    }
  }
  convert_row(n, src, dst);
}

template <typename scalar_t, typename acc_t>
inline void unstage_rows(const acc_t* src, int64_t tile, scalar_t* dst, int64_t row0, int64_t rows, int64_t D,
                         int64_t n, bool stream) {
  for (int64_t r = 0; r < rows; ++r) put_row(n, src + r * tile, dst + (row0 + r) * D, stream);
}

// One forward step over a row: c <- f c + (1 - f) z ; h <- o c (or c).
template <bool HAS_OUTPUT, typename In, typename Out, typename acc_t>
inline void fwd_row(int64_t n, const In* __restrict__ f, const In* __restrict__ z, const In* __restrict__ o,
                    acc_t* __restrict__ c, Out* __restrict__ h) {
  for (int64_t d = 0; d < n; ++d) {
    const acc_t fd = static_cast<acc_t>(f[d]);
    c[d] = fd * c[d] + (acc_t(1) - fd) * static_cast<acc_t>(z[d]);
    if constexpr (HAS_OUTPUT) {
      h[d] = static_cast<Out>(static_cast<acc_t>(o[d]) * c[d]);
    } else {
      h[d] = static_cast<Out>(c[d]);
    }
  }
}

// The same over a staged row, in place: z becomes h.
template <bool HAS_OUTPUT, typename acc_t>
inline void fwd_staged_row(int64_t n, const acc_t* __restrict__ f, acc_t* __restrict__ zh,
                           const acc_t* __restrict__ o, acc_t* __restrict__ c) {
  for (int64_t d = 0; d < n; ++d) {
    c[d] = f[d] * c[d] + (acc_t(1) - f[d]) * zh[d];
    if constexpr (HAS_OUTPUT) {
      zh[d] = o[d] * c[d];
    } else {
      zh[d] = c[d];
    }
  }
}

// Backward pass 1 over a row read in place: keeps f, c_{s-1} - z and dh o in the chunk
// buffers, advances c, writes do = dh c.
template <bool HAS_OUTPUT, typename scalar_t, typename acc_t>
inline void bwd_rescan_row(int64_t n, const scalar_t* __restrict__ f, const scalar_t* __restrict__ z,
                           const scalar_t* __restrict__ dh, const scalar_t* __restrict__ o,
                           scalar_t* __restrict__ dout, acc_t* __restrict__ fr, acc_t* __restrict__ pz,
                           acc_t* __restrict__ g, acc_t* __restrict__ c) {
  for (int64_t d = 0; d < n; ++d) {
    const acc_t fd = static_cast<acc_t>(f[d]), zd = static_cast<acc_t>(z[d]);
    const acc_t dhd = static_cast<acc_t>(dh[d]);
    fr[d] = fd;
    pz[d] = c[d] - zd;
    c[d] = fd * c[d] + (acc_t(1) - fd) * zd;
    if constexpr (HAS_OUTPUT) {
      g[d] = dhd * static_cast<acc_t>(o[d]);
      dout[d] = static_cast<scalar_t>(dhd * c[d]);
    } else {
      g[d] = dhd;
    }
  }
}

// The same over a staged row, in place: z becomes c_{s-1} - z, g (dh) becomes dh o, o becomes do.
template <bool HAS_OUTPUT, typename acc_t>
inline void bwd_rescan_staged_row(int64_t n, const acc_t* __restrict__ f, acc_t* __restrict__ z,
                                  acc_t* __restrict__ g, acc_t* __restrict__ o, acc_t* __restrict__ c) {
  for (int64_t d = 0; d < n; ++d) {
    const acc_t zd = z[d];
    z[d] = c[d] - zd;
    c[d] = f[d] * c[d] + (acc_t(1) - f[d]) * zd;
    if constexpr (HAS_OUTPUT) {
      const acc_t dhd = g[d];
      g[d] = dhd * o[d];
      o[d] = dhd * c[d];
    }
  }
}

// Backward pass 2 over a row, in place: e = g + q ; f becomes df = e (c_{s-1} - z) ;
// z becomes dz = e (1 - f) ; q <- f e.
template <typename acc_t>
inline void bwd_reverse_row(int64_t n, acc_t* __restrict__ f, acc_t* __restrict__ pz, const acc_t* __restrict__ g,
                            acc_t* __restrict__ q) {
  for (int64_t d = 0; d < n; ++d) {
    const acc_t e = g[d] + q[d];
    const acc_t fd = f[d];
    q[d] = fd * e;
    f[d] = e * pz[d];
    pz[d] = e * (acc_t(1) - fd);
  }
}

template <typename scalar_t>
void zero_rows(scalar_t* base, int64_t row0, int64_t row1, int64_t D, int64_t n) {
  for (int64_t t = row0; t < row1; ++t) std::fill_n(base + t * D, n, scalar_t(0));
}

template <typename scalar_t, bool HAS_OUTPUT>
void fwd_kernel(const FoPoolShape& p, const scalar_t* F, const scalar_t* Z, const scalar_t* O,
                const int64_t* lengths, const scalar_t* init, scalar_t* H, scalar_t* c_last,
                at::opmath_type<scalar_t>* ckpt) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t T = p.time, D = p.dim, NC = p.num_checkpoints, chunk = p.chunk;
  const int64_t tile = pick_tile(p.batch, D);
  const int64_t ntiles = (D + tile - 1) / tile;
  const int64_t rows = p.reverse ? std::min(chunk, std::max<int64_t>(T, 1)) : 0;
  const bool stream = use_stream<scalar_t>(p.batch * T * D);
  at::parallel_for(0, p.batch * ntiles, 1, [&](int64_t begin, int64_t end) {
    const FlushDenormalGuard flush;
    std::vector<acc_t> cbuf(tile), fb(rows * tile), zb(rows * tile), ob(HAS_OUTPUT ? rows * tile : 0),
        hrow(stream ? tile : 0);
    acc_t* c = cbuf.data();
    for (int64_t item = begin; item < end; ++item) {
      const int64_t b = item / ntiles, d0 = (item % ntiles) * tile, n = std::min(tile, D - d0);
      const int64_t L = lengths ? lengths[b] : T;
      for (int64_t d = 0; d < n; ++d) c[d] = init ? static_cast<acc_t>(init[b * D + d0 + d]) : acc_t(0);
      const int64_t base = b * T * D + d0;
      // ckpt is null on the inference path (nothing kept for a backward).
      acc_t* ck = ckpt ? ckpt + b * NC * D + d0 : nullptr;
      for (int64_t k = 0; k * chunk < L; ++k) {
        if (ck) std::copy(c, c + n, ck + k * D);
        const int64_t s0 = k * chunk, m = std::min(chunk, L - s0);
        if (!p.reverse) {
          // Steps ascend in time: read and write the rows in place.
          for (int64_t t = s0; t < s0 + m; ++t) {
            const int64_t off = base + t * D;
            if (stream) {  // the row is computed in L1 and streamed out
              fwd_row<HAS_OUTPUT>(n, F + off, Z + off, HAS_OUTPUT ? O + off : nullptr, c, hrow.data());
              put_row(n, hrow.data(), H + off, true);
            } else {
              fwd_row<HAS_OUTPUT>(n, F + off, Z + off, HAS_OUTPUT ? O + off : nullptr, c, H + off);
            }
          }
          continue;
        }
        // Steps descend in time: stage the chunk's rows ascending, walk them backwards in cache.
        const int64_t t0 = L - s0 - m;
        stage_rows(F + base, t0, m, D, n, fb.data(), tile);
        stage_rows(Z + base, t0, m, D, n, zb.data(), tile);
        if constexpr (HAS_OUTPUT) stage_rows(O + base, t0, m, D, n, ob.data(), tile);
        for (int64_t r = m - 1; r >= 0; --r) {
          fwd_staged_row<HAS_OUTPUT>(n, fb.data() + r * tile, zb.data() + r * tile,
                                     HAS_OUTPUT ? ob.data() + r * tile : nullptr, c);
        }
        unstage_rows(zb.data(), tile, H + base, t0, m, D, n, stream);
      }
      // Checkpoints at or past the end hold the final state.
      for (int64_t k = (L + chunk - 1) / chunk; ck && k < NC; ++k) std::copy(c, c + n, ck + k * D);
      zero_rows(H + base, L, T, D, n);
      for (int64_t d = 0; d < n; ++d) c_last[b * D + d0 + d] = static_cast<scalar_t>(c[d]);
    }
    stream_fence();
  });
}

// Gradients, walking each sequence's steps in reverse. q is the gradient reaching c_{s} from
// later steps (f_{s+1} * dc_{s+1}, or grad_c_last at the last valid step), so
//   dc_s = dh_s * o_s + q ;  df_s = dc_s (c_{s-1} - z_s) ;  dz_s = dc_s (1 - f_s) ;
//   do_s = dh_s c_s ;  q <- f_s dc_s ;  grad_initial = q after step 0.
// Per chunk, last chunk first: (1) rescan the chunk's states from its checkpoint in step
// order, keeping f_s, c_{s-1} - z_s and dh_s o_s in L2-resident buffers and writing do_s;
// (2) walk the buffers backwards, turning them into df_s and dz_s; (3) write those back
// ascending. Pass (1) reads the rows in place when steps ascend in time (reverse=False) and
// from an ascending staging copy when they descend.
template <typename scalar_t, bool HAS_OUTPUT>
void bwd_kernel(const FoPoolShape& p, const scalar_t* dH, const scalar_t* dC, const scalar_t* F,
                const scalar_t* Z, const scalar_t* O, const int64_t* lengths,
                const at::opmath_type<scalar_t>* ckpt, scalar_t* dF, scalar_t* dZ, scalar_t* dO,
                scalar_t* dInit) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t T = p.time, D = p.dim, NC = p.num_checkpoints, chunk = p.chunk;
  const int64_t tile = pick_tile(p.batch, D);
  const int64_t ntiles = (D + tile - 1) / tile;
  const int64_t rows = std::min(chunk, std::max<int64_t>(T, 1));
  const bool stream = use_stream<scalar_t>(p.batch * T * D);
  at::parallel_for(0, p.batch * ntiles, 1, [&](int64_t begin, int64_t end) {
    const FlushDenormalGuard flush;
    std::vector<acc_t> qbuf(tile), cbuf(tile), fb(rows * tile), zb(rows * tile), gb(rows * tile),
        ob(HAS_OUTPUT && p.reverse ? rows * tile : 0), dorow(HAS_OUTPUT && stream ? tile : 0);
    acc_t* q = qbuf.data();
    acc_t* c = cbuf.data();
    for (int64_t item = begin; item < end; ++item) {
      const int64_t b = item / ntiles, d0 = (item % ntiles) * tile, n = std::min(tile, D - d0);
      const int64_t L = lengths ? lengths[b] : T;
      const int64_t base = b * T * D + d0;
      for (int64_t d = 0; d < n; ++d) q[d] = static_cast<acc_t>(dC[b * D + d0 + d]);
      for (int64_t k = (L - 1) / chunk; L > 0 && k >= 0; --k) {
        const int64_t s0 = k * chunk, m = std::min(chunk, L - s0);
        const int64_t t0 = p.reverse ? L - s0 - m : s0;  // first row of the chunk in time order
        std::copy(ckpt + (b * NC + k) * D + d0, ckpt + (b * NC + k) * D + d0 + n, c);
        if (!p.reverse) {
          for (int64_t r = 0; r < m; ++r) {
            const int64_t off = base + (t0 + r) * D;
            if constexpr (HAS_OUTPUT && std::is_same_v<scalar_t, float>) {
              if (stream) {  // do is computed in L1 and streamed out
                bwd_rescan_row<true>(n, F + off, Z + off, dH + off, O + off, dorow.data(), fb.data() + r * tile,
                                     zb.data() + r * tile, gb.data() + r * tile, c);
                put_row(n, dorow.data(), dO + off, true);
                continue;
              }
            }
            bwd_rescan_row<HAS_OUTPUT>(n, F + off, Z + off, dH + off, HAS_OUTPUT ? O + off : nullptr,
                                       HAS_OUTPUT ? dO + off : nullptr, fb.data() + r * tile, zb.data() + r * tile,
                                       gb.data() + r * tile, c);
          }
        } else {
          stage_rows(F + base, t0, m, D, n, fb.data(), tile);
          stage_rows(Z + base, t0, m, D, n, zb.data(), tile);
          stage_rows(dH + base, t0, m, D, n, gb.data(), tile);
          if constexpr (HAS_OUTPUT) stage_rows(O + base, t0, m, D, n, ob.data(), tile);
          for (int64_t r = m - 1; r >= 0; --r) {  // steps ascend as rows descend
            bwd_rescan_staged_row<HAS_OUTPUT>(n, fb.data() + r * tile, zb.data() + r * tile, gb.data() + r * tile,
                                              HAS_OUTPUT ? ob.data() + r * tile : nullptr, c);
          }
        }
        for (int64_t j = m - 1; j >= 0; --j) {
          const int64_t r = p.reverse ? m - 1 - j : j;
          bwd_reverse_row(n, fb.data() + r * tile, zb.data() + r * tile, gb.data() + r * tile, q);
        }
        unstage_rows(fb.data(), tile, dF + base, t0, m, D, n, stream);
        unstage_rows(zb.data(), tile, dZ + base, t0, m, D, n, stream);
        if constexpr (HAS_OUTPUT) {
          if (p.reverse) unstage_rows(ob.data(), tile, dO + base, t0, m, D, n, stream);
        }
      }
      zero_rows(dF + base, L, T, D, n);
      zero_rows(dZ + base, L, T, D, n);
      if constexpr (HAS_OUTPUT) zero_rows(dO + base, L, T, D, n);
      for (int64_t d = 0; d < n; ++d) dInit[b * D + d0 + d] = static_cast<scalar_t>(q[d]);
    }
    stream_fence();
  });
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> fo_pool_fwd_cpu(
    const at::Tensor& forget, const at::Tensor& z, const std::optional<at::Tensor>& output,
    const std::optional<at::Tensor>& lengths, const std::optional<at::Tensor>& initial, bool reverse,
    int64_t chunk) {
  auto a = fo_pool_fwd_prepare(forget, z, output, lengths, initial, reverse, chunk);
  const auto& p = a.shape;
  check_length_values(a.lengths, p.time, "sublocal::fo_pool_fwd");
  auto h = cpu_output({p.batch, p.time, p.dim}, a.forget.options());
  auto c_last = at::empty({p.batch, p.dim}, a.forget.options());
  auto ckpt = cpu_output({p.batch, p.num_checkpoints, p.dim},
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

// The forward without `checkpoints`, for when no gradient is needed (sublocal::fo_pool_infer).
std::tuple<at::Tensor, at::Tensor> fo_pool_infer_cpu(const at::Tensor& forget, const at::Tensor& z,
                                                     const std::optional<at::Tensor>& output,
                                                     const std::optional<at::Tensor>& lengths,
                                                     const std::optional<at::Tensor>& initial, bool reverse,
                                                     int64_t chunk) {
  auto a = fo_pool_fwd_prepare(forget, z, output, lengths, initial, reverse, chunk);
  const auto& p = a.shape;
  check_length_values(a.lengths, p.time, "sublocal::fo_pool_infer");
  auto h = cpu_output({p.batch, p.time, p.dim}, a.forget.options());
  auto c_last = at::empty({p.batch, p.dim}, a.forget.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, a.forget.scalar_type(), "fo_pool_infer_cpu", [&] {
    const scalar_t* O = p.has_output ? a.output.data_ptr<scalar_t>() : nullptr;
    const int64_t* L = p.has_lengths ? a.lengths.data_ptr<int64_t>() : nullptr;
    const scalar_t* I = p.has_initial ? a.initial.data_ptr<scalar_t>() : nullptr;
    auto run = p.has_output ? fwd_kernel<scalar_t, true> : fwd_kernel<scalar_t, false>;
    run(p, a.forget.data_ptr<scalar_t>(), a.z.data_ptr<scalar_t>(), O, L, I, h.data_ptr<scalar_t>(),
        c_last.data_ptr<scalar_t>(), nullptr);
  });
  return {h, c_last};
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
  auto grad_forget = cpu_output({p.batch, p.time, p.dim}, opts);
  auto grad_z = cpu_output({p.batch, p.time, p.dim}, opts);
  auto grad_output = p.has_output ? cpu_output({p.batch, p.time, p.dim}, opts) : at::empty({0}, opts);
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
  m.impl("fo_pool_infer", &fo_pool_infer_cpu);
}

}  // namespace sublocal
