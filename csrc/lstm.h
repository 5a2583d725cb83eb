// Packed variable-length LSTM: the shapes and argument checks shared by the CPU and CUDA code.
//
// Arguments (the op schemas in csrc/ops.cpp):
//   x        (B, T, C) float
//   lengths  (B,) int32/int64, each in [1, T], or absent (all T): the contract of common.h
//   weights  one nn.LSTM layer's tensors in its _flat_weights order, per direction
//            [weight_ih (4H, C), weight_hh (4H, H), bias_ih (4H), bias_hh (4H)] (biases absent when
//            the layer has none), then the same for the reverse direction when bidirectional.
//            Gate order i, f, g, o as in nn.LSTM.
//   h0, c0   (D, B, H) or absent (zeros)
//   out      (B, T, D * H), zero at t >= lengths[b]; h_n, c_n (D, B, H)
//
// Step s of sequence b (0 <= s < len_b) reads time t = s in the forward direction and
// t = len_b - 1 - s in the reverse one; h_n / c_n hold the state after step len_b - 1.
//
// The forward also returns two workspace tensors for the backward, in the state dtype (float64
// for float64 inputs, else float32), whose row layout belongs to the device's kernels:
//   gates  (D, N, 4H)  the gate activations i, f, g, o of every valid step
//   states (D, N, 2H)  [c | h] after every valid step
// CPU: N = sum(lengths), rows packed time-major over the batch sorted by length (descending),
// like a PackedSequence's data: step s of the sequence ranked i is row offsets[s] + i; every
// row is written, so nothing is zero-filled. CUDA: N = B * T, row b * T + t (sizing it to the
// valid rows would need the lengths on the host, a sync); rows at padding are never written
// and never read unmasked.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <optional>
#include <vector>

#include "common.h"

namespace sublocal {

struct LstmShape {
  int64_t batch = 0, time = 0, input = 0, hidden = 0, dirs = 1;
  bool has_bias = false, has_h0 = false, has_c0 = false;
};

// One direction's parameters; biases undefined when the layer has none; w_mx, w_mh defined
// for the multiplicative cell only.
struct LstmDirWeights {
  at::Tensor w_ih, w_hh, b_ih, b_hh, w_mx, w_mh;
};

struct LstmArgs {
  at::Tensor x, lengths, h0, c0;
  LstmDirWeights w[2];
  LstmShape shape;
};

inline void lstm_check_state(const std::optional<at::Tensor>& t, const at::Tensor& x, const LstmShape& p,
                             const char* op, const char* name) {
  if (!t.has_value() || !t->defined()) return;
  check_like(*t, x, op, name, "x");
  check_shape(*t, {p.dirs, p.batch, p.hidden}, op, name);
}

// Validates x, lengths (shape and dtype; values are checked by the kernels that read them on
// the host), weights, h0 and c0; makes everything contiguous. `a.lengths` is int64 on x's
// device, or undefined when absent (every sequence has length T).
// multiplicative: the mLSTM cell's weights, per direction [weight_ih (4H, C), weight_hh (4H, H),
// bias_ih (4H), bias_hh (4H), weight_mx (H, C), weight_mh (H, H)] (biases absent together).
inline LstmArgs lstm_prepare(const at::Tensor& x, const std::optional<at::Tensor>& lengths, at::TensorList weights,
                             const std::optional<at::Tensor>& h0, const std::optional<at::Tensor>& c0,
                             bool bidirectional, const char* op, bool multiplicative = false) {
  check_float_tensor(x, op, "x", 3);
  LstmArgs a;
  auto& p = a.shape;
  p.batch = x.size(0);
  p.time = x.size(1);
  p.input = x.size(2);
  p.dirs = bidirectional ? 2 : 1;
  const int64_t n = static_cast<int64_t>(weights.size());
  const int64_t extra = multiplicative ? 2 : 0;  // weight_mx, weight_mh
  TORCH_CHECK(n == (2 + extra) * p.dirs || n == (4 + extra) * p.dirs, op, ": `weights` must hold ",
              (2 + extra) * p.dirs, " tensors (no bias) or ", (4 + extra) * p.dirs, " (with bias) for bidirectional=",
              bidirectional, ", got ", n);
  const int64_t per = n / p.dirs;
  p.has_bias = per == 4 + extra;
  TORCH_CHECK(weights[1].dim() == 2 && weights[1].size(0) % 4 == 0 && weights[1].size(0) == 4 * weights[1].size(1),
              op, ": `weights[1]` (weight_hh) must have shape (4H, H), got ", weights[1].sizes());
  p.hidden = weights[1].size(1);
  const int64_t H = p.hidden;
  for (int64_t d = 0; d < p.dirs; ++d) {
    const at::Tensor* w = weights.data() + d * per;
    // Name and shape of each position: the biases sit at 2, 3 when present, the mLSTM's two
    // weights last.
    std::vector<const char*> names{"weight_ih", "weight_hh"};
    std::vector<std::vector<int64_t>> shapes{{4 * H, p.input}, {4 * H, H}};
    if (p.has_bias) {
      names.insert(names.end(), {"bias_ih", "bias_hh"});
      shapes.insert(shapes.end(), {{4 * H}, {4 * H}});
    }
    if (multiplicative) {
      names.insert(names.end(), {"weight_mx", "weight_mh"});
      shapes.insert(shapes.end(), {{H, p.input}, {H, H}});
    }
    for (int64_t k = 0; k < per; ++k) {
      TORCH_CHECK(w[k].scalar_type() == x.scalar_type(), op, ": `weights[", d * per + k, "]` (", names[k],
                  d ? "_reverse" : "", ") has dtype ", w[k].scalar_type(), " but `x` has dtype ", x.scalar_type());
      TORCH_CHECK(w[k].device() == x.device(), op, ": `weights[", d * per + k, "]` (", names[k],
                  d ? "_reverse" : "", ") is on ", w[k].device(), " but `x` is on ", x.device());
      TORCH_CHECK(w[k].sizes() == at::IntArrayRef(shapes[k]), op, ": `weights[", d * per + k, "]` (", names[k],
                  d ? "_reverse" : "", ") must have shape ", at::IntArrayRef(shapes[k]), ", got ", w[k].sizes());
    }
    a.w[d].w_ih = w[0].contiguous();
    a.w[d].w_hh = w[1].contiguous();
    if (p.has_bias) {
      a.w[d].b_ih = w[2].contiguous();
      a.w[d].b_hh = w[3].contiguous();
    }
    if (multiplicative) {
      a.w[d].w_mx = w[per - 2].contiguous();
      a.w[d].w_mh = w[per - 1].contiguous();
    }
  }
  a.lengths = prepare_lengths(lengths, p.batch, x.device(), op);
  lstm_check_state(h0, x, p, op, "h0");
  lstm_check_state(c0, x, p, op, "c0");
  a.x = x.contiguous();
  if (h0.has_value() && h0->defined()) {
    a.h0 = h0->contiguous();
    p.has_h0 = true;
  }
  if (c0.has_value() && c0->defined()) {
    a.c0 = c0->contiguous();
    p.has_c0 = true;
  }
  return a;
}

// The workspace tensors of the forward must have the shapes above, with `rows` rows per direction
// (the mLSTM's are wider: gates (D, N, 5H), states (D, N, 3H), see csrc/cpu/lstm/cell.h).
inline void lstm_check_workspace(const at::Tensor& gates, const at::Tensor& states, const LstmShape& p,
                                 int64_t rows, const at::Tensor& x, const char* op, bool multiplicative = false) {
  const auto sd = state_dtype(x.scalar_type());
  const int64_t gw = multiplicative ? 5 : 4, sw = multiplicative ? 3 : 2;
  for (const auto& [t, name, width] : {std::tuple{&gates, "gates", gw}, std::tuple{&states, "states", sw}}) {
    TORCH_CHECK(t->scalar_type() == sd, op, ": `", name, "` must have dtype ", sd, ", got ", t->scalar_type());
    TORCH_CHECK(t->device() == x.device(), op, ": `", name, "` is on ", t->device(), " but `x` is on ", x.device());
    check_shape(*t, {p.dirs, rows, width * p.hidden}, op, name);
  }
}

}  // namespace sublocal
