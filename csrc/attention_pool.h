// Attention pooling: the shapes and argument checks shared by the CPU and CUDA kernels.
//
// Layout: h, grad_h are (B, T, D) contiguous; w_a is (D, A); v_a, b_a are (A,); context is
// (B, D); alpha, grad_alpha are (B, T); lengths is (B,) int64 with values in [1, T].
// activations is (N, A) in the accumulation dtype (float64 for float64 inputs, else float32):
// tanh(h_t W_a + b_a) for the N = sum(lengths) valid steps, sequence after sequence, kept by
// the CPU kernel for its backward. The GPU kernels recompute it and return a (0, A) tensor.
#pragma once

#include "common.h"

namespace sublocal {

struct AttentionPoolShape {
  int64_t batch = 0, time = 0, dim = 0, attn = 0;
  bool has_bias = false;
};

struct AttentionPoolArgs {
  at::Tensor h, lengths, w_a, v_a, b_a;
  AttentionPoolShape shape;
};

inline AttentionPoolArgs attention_pool_prepare(const char* op, const at::Tensor& h,
                                                const std::optional<at::Tensor>& lengths,
                                                const at::Tensor& w_a, const at::Tensor& v_a,
                                                const std::optional<at::Tensor>& b_a) {
  check_float_tensor(h, op, "h", 3);
  AttentionPoolArgs a;
  a.shape.batch = h.size(0);
  a.shape.time = h.size(1);
  a.shape.dim = h.size(2);
  check_like(w_a, h, op, "w_a", "h");
  TORCH_CHECK(w_a.dim() == 2 && w_a.size(0) == a.shape.dim, op, ": `w_a` must have shape (", a.shape.dim,
              ", A), got ", w_a.sizes());
  a.shape.attn = w_a.size(1);
  check_like(v_a, h, op, "v_a", "h");
  check_shape(v_a, {a.shape.attn}, op, "v_a");
  a.h = h.contiguous();
  a.w_a = w_a.contiguous();
  a.v_a = v_a.contiguous();
  if (b_a.has_value() && b_a->defined()) {
    check_like(*b_a, h, op, "b_a", "h");
    check_shape(*b_a, {a.shape.attn}, op, "b_a");
    a.b_a = b_a->contiguous();
    a.shape.has_bias = true;
  }
  a.lengths = prepare_lengths_or_full(lengths, a.shape.batch, a.shape.time, h.device(), op);
  return a;
}

}  // namespace sublocal
