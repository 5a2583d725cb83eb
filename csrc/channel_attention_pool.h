// Channel-wise attention pooling: the shapes and argument checks of its kernels.
//
// Layout: values, logits, grad_values, grad_logits, alpha, grad_alpha are (B, T, D) contiguous;
// context, maxpool, their gradients, lse and argmax are (B, D); lengths is (B,) int64 with
// values in [1, T]. lse is in the accumulation dtype (float64 for float64 inputs, else float32):
// log sum_{t < L} exp(logits[b, t, d]), so alpha = exp(logits - lse) at valid steps. argmax is
// the first valid step holding the maximum of values[b, :, d].
#pragma once

#include "common.h"

namespace sublocal {

struct ChannelAttentionPoolArgs {
  at::Tensor values, logits, lengths;
  int64_t batch = 0, time = 0, dim = 0;
};

inline ChannelAttentionPoolArgs channel_attention_pool_prepare(const char* op, const at::Tensor& values,
                                                               const at::Tensor& logits,
                                                               const std::optional<at::Tensor>& lengths) {
  check_float_tensor(values, op, "values", 3);
  check_like(logits, values, op, "logits", "values");
  check_shape(logits, values.sizes(), op, "logits");
  ChannelAttentionPoolArgs a;
  a.batch = values.size(0);
  a.time = values.size(1);
  a.dim = values.size(2);
  a.values = values.contiguous();
  a.logits = logits.contiguous();
  a.lengths = prepare_lengths_or_full(lengths, a.batch, a.time, values.device(), op);
  return a;
}

}  // namespace sublocal
