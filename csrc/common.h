// Argument checks shared by the CPU and CUDA kernels of every op.
//
// The public Python functions check their arguments first and raise ValueError/TypeError;
// these checks guard direct callers of torch.ops.sublocal.* and raise RuntimeError with the
// same information: which argument, what was expected, what was given.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/util/Exception.h>

#include <optional>

namespace sublocal {

inline void check_float_tensor(const at::Tensor& t, const char* op, const char* name, int64_t dim) {
  TORCH_CHECK(t.dim() == dim, op, ": `", name, "` must have ", dim, " dimensions, got shape ", t.sizes());
  TORCH_CHECK(at::isFloatingType(t.scalar_type()), op, ": `", name,
              "` must be a floating-point tensor, got ", t.scalar_type());
}

inline void check_like(const at::Tensor& t, const at::Tensor& ref, const char* op, const char* name,
                       const char* ref_name) {
  TORCH_CHECK(t.scalar_type() == ref.scalar_type(), op, ": `", name, "` has dtype ", t.scalar_type(),
              " but `", ref_name, "` has dtype ", ref.scalar_type());
  TORCH_CHECK(t.device() == ref.device(), op, ": `", name, "` is on ", t.device(), " but `", ref_name,
              "` is on ", ref.device());
}

inline void check_shape(const at::Tensor& t, at::IntArrayRef expected, const char* op, const char* name) {
  TORCH_CHECK(t.sizes() == expected, op, ": `", name, "` must have shape ", expected, ", got ", t.sizes());
}

// Lengths as a contiguous int64 tensor on `device`, or an undefined tensor for "all T".
inline at::Tensor prepare_lengths(const std::optional<at::Tensor>& lengths, int64_t batch,
                                  const c10::Device& device, const char* op) {
  if (!lengths.has_value() || !lengths->defined()) return at::Tensor();
  const at::Tensor& l = *lengths;
  TORCH_CHECK(l.dim() == 1 && l.size(0) == batch, op, ": `lengths` must have shape (", batch,
              ",), got ", l.sizes());
  TORCH_CHECK(l.scalar_type() == at::kInt || l.scalar_type() == at::kLong, op,
              ": `lengths` must be int32 or int64, got ", l.scalar_type());
  return l.to(device, at::kLong).contiguous();
}

// prepare_lengths for kernels that read a length per sequence whatever the input: absent
// becomes (batch,) int64 filled with `time` (the same meaning, "every sequence has length T").
inline at::Tensor prepare_lengths_or_full(const std::optional<at::Tensor>& lengths, int64_t batch, int64_t time,
                                          const c10::Device& device, const char* op) {
  at::Tensor l = prepare_lengths(lengths, batch, device, op);
  return l.defined() ? l : at::empty({batch}, at::TensorOptions().dtype(at::kLong).device(device)).fill_(time);
}

// The `lengths` contract of every op (README, "Variable-length sequences"; the Python side is
// ArgChecker.lengths in sublocal_kernels/_checks.py, with the same rule and message): absent
// means every sequence has length T; otherwise each value is in [kMinLength, T]. A sequence of
// length 0 has no step to pool or to return a state from, so every op refuses it.
constexpr int64_t kMinLength = 1;

// Checks the values of CPU int64 lengths (from prepare_lengths; undefined passes); a
// RuntimeError naming the first bad index otherwise. CPU kernels call it before any work: a
// bad length never reads out of bounds.
inline void check_length_values(const at::Tensor& lengths, int64_t time, const char* op) {
  if (!lengths.defined()) return;
  const int64_t* l = lengths.data_ptr<int64_t>();
  for (int64_t b = 0; b < lengths.numel(); ++b) {
    TORCH_CHECK(l[b] >= kMinLength && l[b] <= time, op, ": `lengths[", b, "]` = ", l[b],
                " is out of range; each length must be in [", kMinLength, ", T] = [", kMinLength, ", ", time, "]");
  }
}

// The dtype in which kernels carry state and accumulate: float64 for float64 inputs, else float32.
inline at::ScalarType state_dtype(at::ScalarType input) {
  return input == at::kDouble ? at::kDouble : at::kFloat;
}

}  // namespace sublocal
