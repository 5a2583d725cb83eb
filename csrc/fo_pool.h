// fo-pool (QRNN): the shapes and flags shared by the CPU and CUDA kernels.
//
// Layout: forget, z, output, h, grads are (B, T, D) contiguous (strides T*D, D, 1 elements);
// initial, c_last, grad_initial are (B, D); checkpoints are (B, T / chunk + 1, D) in the
// state dtype (float64 for float64 inputs, else float32).
//
// Step s of sequence b (0 <= s < len_b) is time t = s forward, t = len_b - 1 - s in reverse.
// checkpoints[b, k] is the state before step s = k * chunk (the final state where k * chunk
// is at or past len_b), so the backward can recompute any chunk's states from its start.
#pragma once

#include "common.h"

namespace sublocal {

struct FoPoolShape {
  int64_t batch = 0, time = 0, dim = 0, chunk = 1, num_checkpoints = 1;
  bool reverse = false, has_output = false, has_lengths = false, has_initial = false;
};

struct FoPoolFwdArgs {
  at::Tensor forget, z, output, lengths, initial;
  FoPoolShape shape;
};

inline FoPoolFwdArgs fo_pool_fwd_prepare(const at::Tensor& forget, const at::Tensor& z,
                                         const std::optional<at::Tensor>& output,
                                         const std::optional<at::Tensor>& lengths,
                                         const std::optional<at::Tensor>& initial, bool reverse,
                                         int64_t chunk) {
  const char* op = "sublocal::fo_pool_fwd";
  check_float_tensor(forget, op, "forget", 3);
  check_like(z, forget, op, "z", "forget");
  check_shape(z, forget.sizes(), op, "z");
  FoPoolFwdArgs a;
  a.shape.batch = forget.size(0);
  a.shape.time = forget.size(1);
  a.shape.dim = forget.size(2);
  TORCH_CHECK(chunk >= 1, op, ": `chunk` must be >= 1, got ", chunk);
  a.shape.chunk = chunk;
  a.shape.num_checkpoints = a.shape.time / chunk + 1;
  a.shape.reverse = reverse;
  a.forget = forget.contiguous();
  a.z = z.contiguous();
  if (output.has_value() && output->defined()) {
    check_like(*output, forget, op, "output", "forget");
    check_shape(*output, forget.sizes(), op, "output");
    a.output = output->contiguous();
    a.shape.has_output = true;
  }
  if (initial.has_value() && initial->defined()) {
    check_like(*initial, forget, op, "initial", "forget");
    check_shape(*initial, {a.shape.batch, a.shape.dim}, op, "initial");
    a.initial = initial->contiguous();
    a.shape.has_initial = true;
  }
  a.lengths = prepare_lengths(lengths, a.shape.batch, forget.device(), op);
  a.shape.has_lengths = a.lengths.defined();
  return a;
}

struct FoPoolBwdArgs {
  at::Tensor grad_h, grad_c_last, forget, z, output, lengths, checkpoints;
  FoPoolShape shape;
};

inline FoPoolBwdArgs fo_pool_bwd_prepare(const at::Tensor& grad_h, const at::Tensor& grad_c_last,
                                         const at::Tensor& forget, const at::Tensor& z,
                                         const std::optional<at::Tensor>& output,
                                         const std::optional<at::Tensor>& lengths,
                                         const at::Tensor& checkpoints, bool reverse, int64_t chunk) {
  const char* op = "sublocal::fo_pool_bwd";
  check_float_tensor(forget, op, "forget", 3);
  check_like(z, forget, op, "z", "forget");
  check_shape(z, forget.sizes(), op, "z");
  check_like(grad_h, forget, op, "grad_h", "forget");
  check_shape(grad_h, forget.sizes(), op, "grad_h");
  check_like(grad_c_last, forget, op, "grad_c_last", "forget");
  check_shape(grad_c_last, {forget.size(0), forget.size(2)}, op, "grad_c_last");
  TORCH_CHECK(chunk >= 1, op, ": `chunk` must be >= 1, got ", chunk);
  FoPoolBwdArgs a;
  a.shape.batch = forget.size(0);
  a.shape.time = forget.size(1);
  a.shape.dim = forget.size(2);
  a.shape.chunk = chunk;
  a.shape.num_checkpoints = a.shape.time / chunk + 1;
  a.shape.reverse = reverse;
  TORCH_CHECK(checkpoints.scalar_type() == state_dtype(forget.scalar_type()), op,
              ": `checkpoints` must have dtype ", state_dtype(forget.scalar_type()), ", got ",
              checkpoints.scalar_type());
  TORCH_CHECK(checkpoints.device() == forget.device(), op, ": `checkpoints` is on ", checkpoints.device(),
              " but `forget` is on ", forget.device());
  check_shape(checkpoints, {a.shape.batch, a.shape.num_checkpoints, a.shape.dim}, op, "checkpoints");
  a.grad_h = grad_h.contiguous();
  a.grad_c_last = grad_c_last.contiguous();
  a.forget = forget.contiguous();
  a.z = z.contiguous();
  a.checkpoints = checkpoints.contiguous();
  if (output.has_value() && output->defined()) {
    check_like(*output, forget, op, "output", "forget");
    check_shape(*output, forget.sizes(), op, "output");
    a.output = output->contiguous();
    a.shape.has_output = true;
  }
  a.lengths = prepare_lengths(lengths, a.shape.batch, forget.device(), op);
  a.shape.has_lengths = a.lengths.defined();
  return a;
}

}  // namespace sublocal
