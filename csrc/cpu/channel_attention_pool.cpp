// Channel-wise attention pooling on the CPU: forward and fused backward.
//
// Memory-bound: a few flops per element read, so the kernel is organised around reading
// values and logits once. A work item is one sequence and a block of kChannels consecutive
// channels; its rows values[b, t, d0:d0+kChannels] are contiguous. Items are split over the
// intra-op threads with at::parallel_for.
//
// Forward, per item, over blocks of kSteps valid steps (an online softmax): the block's
// maximum logit per channel is taken first (the block's logits are in L1 by then), the
// running sum s = sum exp(l - m) and the running weighted sum c = sum exp(l - m) v are
// rescaled once by exp(m_old - m_new), then each element costs one exp. The running maximum
// of values and its step are tracked in the same pass. context = c / s; the log-sum-exp
// lse = m + log s and the arg-max step are the only things kept for the backward ((B, D)
// each). alpha = exp(l - lse) is written in a second pass over the logits only when asked.
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

#include "channel_attention_pool.h"
#include "cpu/fp_mode.h"
#include "output_cache.h"

namespace sublocal {
namespace {

// Channels per work item: 64 float32 running statistics (4 arrays) stay in registers/L1, and
// D = 1024 gives B * 16 items to spread over the threads.
constexpr int64_t kChannels = 64;
// Steps per online-softmax block: its logits (kSteps x kChannels, 4 KB in float32) are still
// in L1 when the exps read them again after the block maximum.
constexpr int64_t kSteps = 16;

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
  constexpr acc_t kNegInf = -std::numeric_limits<acc_t>::infinity();

  at::parallel_for(0, a.batch * n_blocks, 1, [&](int64_t begin, int64_t end) {
    const FlushDenormalGuard flush;
    acc_t m[kChannels], s[kChannels], c[kChannels], vmax[kChannels], bm[kChannels];
    int64_t arg[kChannels];
    for (int64_t item = begin; item < end; ++item) {
      const int64_t b = item / n_blocks, d0 = (item % n_blocks) * kChannels;
      const int64_t nc = std::min(kChannels, D - d0), len = L[b];
      std::fill_n(m, nc, kNegInf);
      std::fill_n(s, nc, acc_t(0));
      std::fill_n(c, nc, acc_t(0));
      std::fill_n(vmax, nc, kNegInf);
      std::fill_n(arg, nc, int64_t(0));
      for (int64_t t0 = 0; t0 < len; t0 += kSteps) {
        const int64_t t1 = std::min(len, t0 + kSteps);
        std::copy_n(m, nc, bm);
        for (int64_t t = t0; t < t1; ++t) {
          const scalar_t* lr = lp + (b * T + t) * D + d0;
          for (int64_t k = 0; k < nc; ++k) bm[k] = std::max(bm[k], static_cast<acc_t>(lr[k]));
        }
        for (int64_t k = 0; k < nc; ++k) {
          // m = -inf only before the first block, where s = c = 0 already.
          const acc_t r = m[k] == kNegInf ? acc_t(0) : std::exp(m[k] - bm[k]);
          s[k] *= r;
          c[k] *= r;
          m[k] = bm[k];
        }
        for (int64_t t = t0; t < t1; ++t) {
          const scalar_t* lr = lp + (b * T + t) * D + d0;
          const scalar_t* vr = vp + (b * T + t) * D + d0;
          for (int64_t k = 0; k < nc; ++k) {
            const acc_t v = static_cast<acc_t>(vr[k]);
            const acc_t p = std::exp(static_cast<acc_t>(lr[k]) - m[k]);
            s[k] += p;
            c[k] += p * v;
            if (v > vmax[k]) {
              vmax[k] = v;
              arg[k] = t;
            }
          }
        }
      }
      for (int64_t k = 0; k < nc; ++k) {
        const int64_t o = b * D + d0 + k;
        ctx_out[o] = static_cast<scalar_t>(c[k] / s[k]);
        max_out[o] = static_cast<scalar_t>(vmax[k]);
        lse_out[o] = m[k] + std::log(s[k]);
        arg_out[o] = arg[k];
      }
      if (alpha_out != nullptr) {
        const acc_t* ls = lse_out + b * D + d0;
        for (int64_t t = 0; t < T; ++t) {
          const scalar_t* lr = lp + (b * T + t) * D + d0;
          scalar_t* ar = alpha_out + (b * T + t) * D + d0;
          if (t < len) {
            for (int64_t k = 0; k < nc; ++k) ar[k] = static_cast<scalar_t>(std::exp(static_cast<acc_t>(lr[k]) - ls[k]));
          } else {
            std::fill_n(ar, nc, scalar_t(0));
          }
        }
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
    acc_t g[kChannels], dc[kChannels], cx[kChannels];
    for (int64_t item = begin; item < end; ++item) {
      const int64_t b = item / n_blocks, d0 = (item % n_blocks) * kChannels;
      const int64_t nc = std::min(kChannels, D - d0), len = L[b];
      const acc_t* ls = lsp + b * D + d0;
      for (int64_t k = 0; k < nc; ++k) {
        dc[k] = dcp != nullptr ? static_cast<acc_t>(dcp[b * D + d0 + k]) : acc_t(0);
        cx[k] = static_cast<acc_t>(cxp[b * D + d0 + k]);
        g[k] = 0;
      }
      if (gap != nullptr && gl != nullptr) {
        for (int64_t t = 0; t < len; ++t) {
          const int64_t row = (b * T + t) * D + d0;
          for (int64_t k = 0; k < nc; ++k) {
            g[k] += std::exp(static_cast<acc_t>(lp[row + k]) - ls[k]) * static_cast<acc_t>(gap[row + k]);
          }
        }
      }
      for (int64_t t = 0; t < len; ++t) {
        const int64_t row = (b * T + t) * D + d0;
        for (int64_t k = 0; k < nc; ++k) {
          const acc_t al = std::exp(static_cast<acc_t>(lp[row + k]) - ls[k]);
          if (gl != nullptr) {
            acc_t da = dc[k] * (static_cast<acc_t>(vp[row + k]) - cx[k]);
            if (gap != nullptr) da += static_cast<acc_t>(gap[row + k]) - g[k];
            gl[row + k] = static_cast<scalar_t>(al * da);
          }
          if (gv != nullptr) gv[row + k] = static_cast<scalar_t>(al * dc[k]);
        }
      }
      for (int64_t pad = (b * T + len) * D; pad < (b + 1) * T * D; pad += D) {
        if (gl != nullptr) std::fill_n(gl + pad + d0, nc, scalar_t(0));
        if (gv != nullptr) std::fill_n(gv + pad + d0, nc, scalar_t(0));
      }
      if (gv != nullptr && dmp != nullptr) {
        for (int64_t k = 0; k < nc; ++k) {
          const int64_t o = b * D + d0 + k;
          scalar_t& x = gv[(b * T + argp[o]) * D + d0 + k];
          x = static_cast<scalar_t>(static_cast<acc_t>(x) + static_cast<acc_t>(dmp[o]));
        }
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
