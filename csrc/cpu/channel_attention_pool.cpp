// Channel-wise attention pooling on the CPU: forward and fused backward.
//
// Memory-bound: a few flops per element read, so the kernel is organised around reading
// values and logits once. A work item is one sequence and a block of kChannels consecutive
// channels; its rows values[b, t, d0:d0+kChannels] are contiguous. Items are split over the
// intra-op threads with at::parallel_for.
//
// Forward, per item, over blocks of kSteps valid steps (an online softmax): the running sum
// s = sum exp(l - m) and the running weighted sum c = sum exp(l - m) v are kept against a
// reference m per channel that is raised (s and c rescaled by exp(m_old - m_new)) when a
// block's logits pass it; each element then costs one exp. float32 runs 16-lane vectors whose
// m may lag the maximum by up to 16 (one pass, the block redone in the rare case it is passed
// by more; see fwd_vectors_f32); the other dtypes, and float32's last channels past a multiple
// of 16, take the block's maximum first. The running maximum of values and its step are
// tracked in the same pass. context = c / s; the log-sum-exp lse = m + log s and the arg-max
// step are the only things kept for the backward ((B, D) each). alpha = exp(l - lse) is
// written in a second pass over the logits only when asked.
//
// exp is exp_f32 (cpu/vec_math.h, a polynomial that vectorises) for float32 and for the float
// accumulators of float16 / bfloat16, std::exp for float64. Measured at light-attention
// (B=32, T=1000, lengths U[250, 1000], D=1024, float32, 2 threads): with std::exp, a scalar
// call per element, the forward took 62 ms and the backward 145 ms; now 9-13 ms and 42-64 ms.
// In-cache the forward is bound by its arithmetic (about 3 G elements/s on 2 cores, the exp's
// ~20 vector operations per 16 elements) rather than by reading memory; the backward's time
// is mostly the first touch of its two fresh (B, T, D) outputs.
//
// Backward, per item, with alpha recomputed as exp(l - lse) and G = sum_t alpha_t dalpha_t
// (one extra pass over logits and grad_alpha, only when alpha's gradient is given):
//   d logits_t = alpha_t (dalpha_t - G + dctx (v_t - context)),
//   d values_t = alpha_t dctx + [t == argmax] dmax,
// since the context's share of d alpha_t is dctx v_t and sum_t alpha_t dctx v_t = dctx context.
// Padded steps get exact zeros in both gradients.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <c10/core/ScalarType.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>

#include "channel_attention_pool.h"
#include "cpu/fp_mode.h"
#include "output_cache.h"
// last: its no-trapping-math pragma applies to this file's functions only
#include "cpu/vec_math.h"

namespace sublocal {
namespace {

// Channels per work item: 64 float32 running statistics (4 arrays) stay in registers/L1, and
// D = 1024 gives B * 16 items to spread over the threads.
constexpr int64_t kChannels = 64;
// Steps per online-softmax block: its logits (kSteps x kChannels, 4 KB in float32) are still
// in L1 when the exps read them again after the block maximum.
constexpr int64_t kSteps = 16;

// exp in the accumulation type: the vectorisable polynomial for float (float32, and the
// float accumulators of float16 / bfloat16), the library's for double.
inline float exp_acc(float x) { return exp_f32(x); }
inline double exp_acc(double x) { return std::exp(x); }

// One forward work item: sequence b, channels [d0, d0 + nc), valid steps [0, len). The rows
// of values and logits start at vp / lp and are D apart. Outputs at o = b * D + d0; alpha's
// rows (when asked) at ap, T of them, padding zero-filled. The inner loops over channels are
// branch-free (the arg-max is a select on an int32 step) so that each vectorises. float32
// takes it only for an item's channels past its last full 16-lane vector.
template <typename scalar_t, typename acc_t>
__attribute__((always_inline)) inline void fwd_item(int64_t nc, int64_t len, int64_t T, int64_t D,
                                                    const scalar_t* __restrict vp, const scalar_t* __restrict lp,
                                                    scalar_t* __restrict ctx_out, scalar_t* __restrict max_out,
                                                    acc_t* __restrict lse_out, int64_t* __restrict arg_out,
                                                    scalar_t* __restrict ap) {
  constexpr acc_t kNegInf = -std::numeric_limits<acc_t>::infinity();
  acc_t m[kChannels], s[kChannels], c[kChannels], vmax[kChannels], bm[kChannels];
  int32_t arg[kChannels];
  for (int64_t k = 0; k < nc; ++k) {
    m[k] = kNegInf;
    s[k] = c[k] = acc_t(0);
    vmax[k] = kNegInf;
    arg[k] = 0;
  }
  for (int64_t t0 = 0; t0 < len; t0 += kSteps) {
    const int64_t t1 = std::min(len, t0 + kSteps);
    for (int64_t k = 0; k < nc; ++k) bm[k] = m[k];
    for (int64_t t = t0; t < t1; ++t) {
      const scalar_t* lr = lp + t * D;
      for (int64_t k = 0; k < nc; ++k) {
        const acc_t l = static_cast<acc_t>(lr[k]);
        bm[k] = l > bm[k] ? l : bm[k];
      }
    }
    for (int64_t k = 0; k < nc; ++k) {
      // m = -inf only before the first block, where s = c = 0 already.
      const acc_t r = m[k] == kNegInf ? acc_t(0) : exp_acc(m[k] - bm[k]);
      s[k] *= r;
      c[k] *= r;
      m[k] = bm[k];
    }
    for (int64_t t = t0; t < t1; ++t) {
      const scalar_t* lr = lp + t * D;
      const scalar_t* vr = vp + t * D;
      const int32_t step = static_cast<int32_t>(t);
      for (int64_t k = 0; k < nc; ++k) {
        const acc_t v = static_cast<acc_t>(vr[k]);
        const acc_t p = exp_acc(static_cast<acc_t>(lr[k]) - m[k]);
        s[k] += p;
        c[k] += p * v;
        const bool above = v > vmax[k];
        vmax[k] = above ? v : vmax[k];
        arg[k] = above ? step : arg[k];
      }
    }
  }
  for (int64_t k = 0; k < nc; ++k) {
    ctx_out[k] = static_cast<scalar_t>(c[k] / s[k]);
    max_out[k] = static_cast<scalar_t>(vmax[k]);
    lse_out[k] = m[k] + std::log(s[k]);
    arg_out[k] = arg[k];
  }
  if (ap != nullptr) {
    for (int64_t t = 0; t < len; ++t) {
      const scalar_t* lr = lp + t * D;
      scalar_t* ar = ap + t * D;
      for (int64_t k = 0; k < nc; ++k) ar[k] = static_cast<scalar_t>(exp_acc(static_cast<acc_t>(lr[k]) - lse_out[k]));
    }
    for (int64_t t = len; t < T; ++t) std::fill_n(ap + t * D, nc, scalar_t(0));
  }
}

// Any lane set: an OR reduction of the lanes (a few shuffles in each clone), once per block.
__attribute__((always_inline)) inline bool any_lane(vint16 x) {
  int32_t lanes[16];
  std::memcpy(lanes, &x, sizeof(lanes));
  int32_t r = 0;
  for (int k = 0; k < 16; ++k) r |= lanes[k];
  return r != 0;
}

// float32, channels [0, 16 * NV) of an item, in NV 16-lane vectors with the running
// statistics in registers (NV is a constant, so the arrays below are registers), one pass over
// the steps, each step's NV vectors contiguous. The exponent's reference m may lag the running
// maximum by up to kSlack (exp(l - m) <= e^16, far from overflow): each block of kSteps steps
// is accumulated against the current m while its maximum is tracked, and only when that
// maximum passes m + kSlack (a few times per sequence at most, at its start) is the block
// undone, m raised to it, the sums rescaled by exp(m_old - m_new) and the block redone. That
// replaces a maximum pass before each block's exps: with D * 4 bytes a multiple of 4 KB, a
// block's rows share L1 sets and that second read came from L2.
template <int NV>
__attribute__((always_inline)) inline void fwd_vectors_f32(int64_t len, int64_t T, int64_t D, const float* vp,
                                                           const float* lp, float* ctx_out, float* max_out,
                                                           float* lse_out, int64_t* arg_out, float* ap) {
  constexpr float kNegInf = -std::numeric_limits<float>::infinity();
  constexpr float kSlack = 16.0f;
  vfloat16 m[NV], s[NV], c[NV], vmax[NV];
  vint16 arg[NV];
  for (int j = 0; j < NV; ++j) {
    m[j] = vmax[j] = vfloat16{} + kNegInf;
    s[j] = c[j] = vfloat16{};
    arg[j] = vint16{};
  }
  for (int64_t t0 = 0; t0 < len; t0 += kSteps) {
    const int64_t t1 = std::min(len, t0 + kSteps);
    vfloat16 s0[NV], c0[NV], vmax0[NV];
    vint16 arg0[NV];
    for (int j = 0; j < NV; ++j) {
      s0[j] = s[j];
      c0[j] = c[j];
      vmax0[j] = vmax[j];
      arg0[j] = arg[j];
    }
    for (int pass = 0; pass < 2; ++pass) {
      vfloat16 bm[NV];
      for (int j = 0; j < NV; ++j) bm[j] = m[j];
      for (int64_t t = t0; t < t1; ++t) {
        const vint16 step = vint16{} + static_cast<int32_t>(t);
        for (int j = 0; j < NV; ++j) {
          const vfloat16 l = load16(lp + t * D + 16 * j), v = load16(vp + t * D + 16 * j);
          bm[j] = l > bm[j] ? l : bm[j];
          const vfloat16 p = exp16(l - m[j]);
          s[j] += p;
          c[j] += p * v;
          const vint16 above = v > vmax[j];
          vmax[j] = above ? v : vmax[j];
          arg[j] = above ? step : arg[j];
        }
      }
      vint16 late = vint16{};
      for (int j = 0; j < NV; ++j) late |= bm[j] > m[j] + kSlack;
      if (!any_lane(late)) break;
      // undo the block; m = -inf only before the first block, where s = c = 0 already
      for (int j = 0; j < NV; ++j) {
        const vfloat16 r = m[j] == kNegInf ? vfloat16{} : exp16(m[j] - bm[j]);
        m[j] = bm[j];
        s[j] = s0[j] * r;
        c[j] = c0[j] * r;
        vmax[j] = vmax0[j];
        arg[j] = arg0[j];
      }
    }
  }
  for (int j = 0; j < NV; ++j) {
    store16(ctx_out + 16 * j, c[j] / s[j]);
    store16(max_out + 16 * j, vmax[j]);
    float mj[16], sj[16];
    int32_t aj[16];
    store16(mj, m[j]);
    store16(sj, s[j]);
    std::memcpy(aj, &arg[j], sizeof(aj));
    for (int k = 0; k < 16; ++k) {
      lse_out[16 * j + k] = mj[k] + std::log(sj[k]);
      arg_out[16 * j + k] = aj[k];
    }
  }
  if (ap != nullptr) {
    vfloat16 lse[NV];
    for (int j = 0; j < NV; ++j) lse[j] = load16(lse_out + 16 * j);
    for (int64_t t = 0; t < len; ++t) {
      for (int j = 0; j < NV; ++j) store16(ap + t * D + 16 * j, exp16(load16(lp + t * D + 16 * j) - lse[j]));
    }
    for (int64_t t = len; t < T; ++t) std::fill_n(ap + t * D, 16 * NV, 0.0f);
  }
}

// float32: one clone per vector width; the channels past the last full vector take the scalar
// loops. Measured at light-attention (B=32, T=1000, D=1024, 2 threads): with std::exp, a scalar
// library call, the forward took 62 ms; with the same loops on exp_f32, 12.5 ms.
SUBLOCAL_VECTOR_CLONES
void fwd_item_f32(int64_t nc, int64_t len, int64_t T, int64_t D, const float* vp, const float* lp, float* ctx_out,
                  float* max_out, float* lse_out, int64_t* arg_out, float* ap) {
  static_assert(kChannels == 64, "the switch below covers 64 / 16 vectors");
  const int64_t n16 = nc / 16, k0 = 16 * n16;
  switch (n16) {
    case 4: fwd_vectors_f32<4>(len, T, D, vp, lp, ctx_out, max_out, lse_out, arg_out, ap); break;
    case 3: fwd_vectors_f32<3>(len, T, D, vp, lp, ctx_out, max_out, lse_out, arg_out, ap); break;
    case 2: fwd_vectors_f32<2>(len, T, D, vp, lp, ctx_out, max_out, lse_out, arg_out, ap); break;
    case 1: fwd_vectors_f32<1>(len, T, D, vp, lp, ctx_out, max_out, lse_out, arg_out, ap); break;
    default: break;
  }
  if (k0 < nc) {
    fwd_item<float, float>(nc - k0, len, T, D, vp + k0, lp + k0, ctx_out + k0, max_out + k0, lse_out + k0,
                           arg_out + k0, ap != nullptr ? ap + k0 : nullptr);
  }
}

template <typename scalar_t>
void fwd_impl(const ChannelAttentionPoolArgs& a, bool return_alpha, at::Tensor& context, at::Tensor& maxpool,
              at::Tensor& alpha, at::Tensor& lse, at::Tensor& argmax) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t T = a.time, D = a.dim;
  const int64_t n_blocks = (D + kChannels - 1) / kChannels;
  const int64_t* L = a.lengths.data_ptr<int64_t>();
  const scalar_t* vp = a.values.data_ptr<scalar_t>();
  const scalar_t* lp = a.logits.data_ptr<scalar_t>();
  scalar_t* ctx_out = context.data_ptr<scalar_t>();
  scalar_t* max_out = maxpool.data_ptr<scalar_t>();
  scalar_t* alpha_out = return_alpha ? alpha.data_ptr<scalar_t>() : nullptr;
  acc_t* lse_out = lse.data_ptr<acc_t>();
  int64_t* arg_out = argmax.data_ptr<int64_t>();

  at::parallel_for(0, a.batch * n_blocks, 1, [&](int64_t begin, int64_t end) {
    const FlushDenormalGuard flush;
    for (int64_t item = begin; item < end; ++item) {
      const int64_t b = item / n_blocks, d0 = (item % n_blocks) * kChannels;
      const int64_t nc = std::min(kChannels, D - d0), in = b * T * D + d0, o = b * D + d0;
      scalar_t* ap = alpha_out != nullptr ? alpha_out + in : nullptr;
      if constexpr (std::is_same_v<scalar_t, float>) {
        fwd_item_f32(nc, L[b], T, D, vp + in, lp + in, ctx_out + o, max_out + o, lse_out + o, arg_out + o, ap);
      } else {
        fwd_item<scalar_t, acc_t>(nc, L[b], T, D, vp + in, lp + in, ctx_out + o, max_out + o, lse_out + o,
                                  arg_out + o, ap);
      }
    }
  });
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> channel_attention_pool_fwd_cpu(
    const at::Tensor& values, const at::Tensor& logits, const std::optional<at::Tensor>& lengths,
    bool return_alpha) {
  const char* op = "sublocal::channel_attention_pool_fwd";
  auto a = channel_attention_pool_prepare(op, values, logits, lengths);
  check_length_values(a.lengths, a.time, op);
  // the arg-max step is tracked as int32 inside the vectorised loop
  TORCH_CHECK(a.time <= std::numeric_limits<int32_t>::max(), op, ": `values` has ", a.time,
              " steps; at most 2147483647 are supported");
  const auto opts = a.values.options();
  auto context = at::empty({a.batch, a.dim}, opts);
  auto maxpool = at::empty({a.batch, a.dim}, opts);
  auto alpha = return_alpha ? cpu_output({a.batch, a.time, a.dim}, opts) : at::empty({0}, opts);
  auto lse = at::empty({a.batch, a.dim}, opts.dtype(state_dtype(a.values.scalar_type())));
  auto argmax = at::empty({a.batch, a.dim}, opts.dtype(at::kLong));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, a.values.scalar_type(), "channel_attention_pool_fwd_cpu",
                                  [&] { fwd_impl<scalar_t>(a, return_alpha, context, maxpool, alpha, lse, argmax); });
  return {context, maxpool, alpha, lse, argmax};
}

// The backward's pass over a work item's valid steps, one variant per set of gradients asked
// for, so that the loop over channels has no branch and vectorises. g = sum_t alpha_t dalpha_t.
template <bool GL, bool GV, bool GA, typename scalar_t, typename acc_t>
__attribute__((always_inline)) inline void bwd_rows(int64_t nc, int64_t len, int64_t D, const scalar_t* __restrict vp,
                                                    const scalar_t* __restrict lp, const scalar_t* __restrict gap,
                                                    const acc_t* __restrict ls, const acc_t* __restrict dc,
                                                    const acc_t* __restrict cx, const acc_t* __restrict g,
                                                    scalar_t* __restrict gl, scalar_t* __restrict gv) {
  for (int64_t t = 0; t < len; ++t) {
    const int64_t row = t * D;
    for (int64_t k = 0; k < nc; ++k) {
      const acc_t al = exp_acc(static_cast<acc_t>(lp[row + k]) - ls[k]);
      if constexpr (GL) {
        acc_t da = dc[k] * (static_cast<acc_t>(vp[row + k]) - cx[k]);
        if constexpr (GA) da += static_cast<acc_t>(gap[row + k]) - g[k];
        gl[row + k] = static_cast<scalar_t>(al * da);
      }
      if constexpr (GV) gv[row + k] = static_cast<scalar_t>(al * dc[k]);
    }
  }
}

// One backward work item (sequence b, channels [d0, d0 + nc)): pointers into the (B, T, D)
// tensors at (b, 0, d0) and into the (B, D) ones at (b, d0); gap, dcp, dmp, gl, gv may be null.
template <typename scalar_t, typename acc_t>
__attribute__((always_inline)) inline void bwd_item(int64_t nc, int64_t len, int64_t T, int64_t D,
                                                    const scalar_t* vp, const scalar_t* lp, const scalar_t* gap,
                                                    const acc_t* ls, const scalar_t* dcp, const scalar_t* dmp,
                                                    const scalar_t* cxp, const int64_t* argp, scalar_t* gl,
                                                    scalar_t* gv) {
  acc_t g[kChannels], dc[kChannels], cx[kChannels];
  for (int64_t k = 0; k < nc; ++k) {
    dc[k] = dcp != nullptr ? static_cast<acc_t>(dcp[k]) : acc_t(0);
    cx[k] = static_cast<acc_t>(cxp[k]);
    g[k] = 0;
  }
  const bool ga = gap != nullptr && gl != nullptr;
  if (ga) {
    for (int64_t t = 0; t < len; ++t) {
      const scalar_t* lr = lp + t * D;
      const scalar_t* ar = gap + t * D;
      for (int64_t k = 0; k < nc; ++k) g[k] += exp_acc(static_cast<acc_t>(lr[k]) - ls[k]) * static_cast<acc_t>(ar[k]);
    }
  }
  if (gl != nullptr && gv != nullptr) {
    if (ga) {
      bwd_rows<true, true, true>(nc, len, D, vp, lp, gap, ls, dc, cx, g, gl, gv);
    } else {
      bwd_rows<true, true, false>(nc, len, D, vp, lp, gap, ls, dc, cx, g, gl, gv);
    }
  } else if (gl != nullptr) {
    if (ga) {
      bwd_rows<true, false, true>(nc, len, D, vp, lp, gap, ls, dc, cx, g, gl, gv);
    } else {
      bwd_rows<true, false, false>(nc, len, D, vp, lp, gap, ls, dc, cx, g, gl, gv);
    }
  } else if (gv != nullptr) {
    bwd_rows<false, true, false>(nc, len, D, vp, lp, gap, ls, dc, cx, g, gl, gv);
  }
  for (int64_t t = len; t < T; ++t) {
    if (gl != nullptr) std::fill_n(gl + t * D, nc, scalar_t(0));
    if (gv != nullptr) std::fill_n(gv + t * D, nc, scalar_t(0));
  }
  if (gv != nullptr && dmp != nullptr) {
    for (int64_t k = 0; k < nc; ++k) {
      scalar_t& x = gv[argp[k] * D + k];
      x = static_cast<scalar_t>(static_cast<acc_t>(x) + static_cast<acc_t>(dmp[k]));
    }
  }
}

SUBLOCAL_VECTOR_CLONES
void bwd_item_f32(int64_t nc, int64_t len, int64_t T, int64_t D, const float* vp, const float* lp, const float* gap,
                  const float* ls, const float* dcp, const float* dmp, const float* cxp, const int64_t* argp,
                  float* gl, float* gv) {
  bwd_item<float, float>(nc, len, T, D, vp, lp, gap, ls, dcp, dmp, cxp, argp, gl, gv);
}

template <typename scalar_t>
void bwd_impl(const ChannelAttentionPoolArgs& a, const at::Tensor& grad_context, const at::Tensor& grad_maxpool,
              const at::Tensor& grad_alpha, const at::Tensor& context, const at::Tensor& lse, const at::Tensor& argmax,
              at::Tensor& grad_values, at::Tensor& grad_logits) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t T = a.time, D = a.dim;
  const int64_t n_blocks = (D + kChannels - 1) / kChannels;
  const int64_t* L = a.lengths.data_ptr<int64_t>();
  const scalar_t* vp = a.values.data_ptr<scalar_t>();
  const scalar_t* lp = a.logits.data_ptr<scalar_t>();
  const scalar_t* dcp = grad_context.defined() ? grad_context.data_ptr<scalar_t>() : nullptr;
  const scalar_t* dmp = grad_maxpool.defined() ? grad_maxpool.data_ptr<scalar_t>() : nullptr;
  const scalar_t* gap = grad_alpha.defined() ? grad_alpha.data_ptr<scalar_t>() : nullptr;
  const scalar_t* cxp = context.data_ptr<scalar_t>();
  const acc_t* lsp = lse.data_ptr<acc_t>();
  const int64_t* argp = argmax.data_ptr<int64_t>();
  scalar_t* gv = grad_values.defined() ? grad_values.data_ptr<scalar_t>() : nullptr;
  scalar_t* gl = grad_logits.defined() ? grad_logits.data_ptr<scalar_t>() : nullptr;

  at::parallel_for(0, a.batch * n_blocks, 1, [&](int64_t begin, int64_t end) {
    const FlushDenormalGuard flush;
    for (int64_t item = begin; item < end; ++item) {
      const int64_t b = item / n_blocks, d0 = (item % n_blocks) * kChannels;
      const int64_t nc = std::min(kChannels, D - d0), in = b * T * D + d0, o = b * D + d0;
      const scalar_t* ga_i = gap != nullptr ? gap + in : nullptr;
      const scalar_t* dc_i = dcp != nullptr ? dcp + o : nullptr;
      const scalar_t* dm_i = dmp != nullptr ? dmp + o : nullptr;
      scalar_t* gl_i = gl != nullptr ? gl + in : nullptr;
      scalar_t* gv_i = gv != nullptr ? gv + in : nullptr;
      if constexpr (std::is_same_v<scalar_t, float>) {
        bwd_item_f32(nc, L[b], T, D, vp + in, lp + in, ga_i, lsp + o, dc_i, dm_i, cxp + o, argp + o, gl_i, gv_i);
      } else {
        bwd_item<scalar_t, acc_t>(nc, L[b], T, D, vp + in, lp + in, ga_i, lsp + o, dc_i, dm_i, cxp + o, argp + o,
                                  gl_i, gv_i);
      }
    }
  });
}

at::Tensor optional_grad(const std::optional<at::Tensor>& grad, const ChannelAttentionPoolArgs& a, at::IntArrayRef shape,
                         const char* op, const char* name) {
  if (!grad.has_value() || !grad->defined()) return at::Tensor();
  check_like(*grad, a.values, op, name, "values");
  check_shape(*grad, shape, op, name);
  return grad->contiguous();
}

std::tuple<at::Tensor, at::Tensor> channel_attention_pool_bwd_cpu(
    const std::optional<at::Tensor>& grad_context, const std::optional<at::Tensor>& grad_maxpool,
    const std::optional<at::Tensor>& grad_alpha, const at::Tensor& values, const at::Tensor& logits,
    const std::optional<at::Tensor>& lengths, const at::Tensor& context, const at::Tensor& lse, const at::Tensor& argmax,
    bool need_grad_values, bool need_grad_logits) {
  const char* op = "sublocal::channel_attention_pool_bwd";
  auto a = channel_attention_pool_prepare(op, values, logits, lengths);
  check_length_values(a.lengths, a.time, op);
  const int64_t B = a.batch, T = a.time, D = a.dim;
  const at::Tensor dc = optional_grad(grad_context, a, {B, D}, op, "grad_context");
  const at::Tensor dm = optional_grad(grad_maxpool, a, {B, D}, op, "grad_maxpool");
  const at::Tensor ga = optional_grad(grad_alpha, a, {B, T, D}, op, "grad_alpha");
  check_like(context, a.values, op, "context", "values");
  check_shape(context, {B, D}, op, "context");
  const auto acc_type = state_dtype(a.values.scalar_type());
  TORCH_CHECK(lse.scalar_type() == acc_type && lse.device() == a.values.device(), op, ": `lse` must be a ", acc_type,
              " tensor on ", a.values.device(), ", got ", lse.scalar_type(), " on ", lse.device());
  check_shape(lse, {B, D}, op, "lse");
  TORCH_CHECK(argmax.scalar_type() == at::kLong && argmax.device() == a.values.device(), op,
              ": `argmax` must be an int64 tensor on ", a.values.device(), ", got ", argmax.scalar_type(), " on ",
              argmax.device());
  check_shape(argmax, {B, D}, op, "argmax");
  const at::Tensor arg = argmax.contiguous();
  {
    // The max-pool's gradient is written at argmax: a step outside the sequence would write
    // out of bounds (or into padding), so every index is checked before any work.
    const int64_t* ap = arg.data_ptr<int64_t>();
    const int64_t* L = a.lengths.data_ptr<int64_t>();
    for (int64_t i = 0; i < B * D; ++i) {
      TORCH_CHECK(ap[i] >= 0 && ap[i] < L[i / std::max<int64_t>(D, 1)], op, ": `argmax` value ", ap[i],
                  " at (", i / D, ", ", i % D, ") is not a valid step of its sequence");
    }
  }
  const auto opts = a.values.options();
  at::Tensor grad_values = need_grad_values ? cpu_output({B, T, D}, opts) : at::Tensor();
  at::Tensor grad_logits = need_grad_logits ? cpu_output({B, T, D}, opts) : at::Tensor();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, a.values.scalar_type(), "channel_attention_pool_bwd_cpu",
                                  [&] {
                                    bwd_impl<scalar_t>(a, dc, dm, ga, context.contiguous(), lse.contiguous(), arg,
                                                       grad_values, grad_logits);
                                  });
  return {need_grad_values ? grad_values : at::empty({0}, opts), need_grad_logits ? grad_logits : at::empty({0}, opts)};
}

}  // namespace

TORCH_LIBRARY_IMPL(sublocal, CPU, m) {
  m.impl("channel_attention_pool_fwd", &channel_attention_pool_fwd_cpu);
  m.impl("channel_attention_pool_bwd", &channel_attention_pool_bwd_cpu);
}

}  // namespace sublocal
