// Multi-width conv1d: the geometry and argument checks shared by the CPU (and any CUDA) kernels.
//
// Layout: x (B, T, C), y and grad_y (B, T, N) contiguous, channels last; N = sum F_i is the
// widths' filters concatenated in order. weights[i] is (F_i, C, k_i) as in nn.Conv1d; bias is
// the per-width biases concatenated, (N,).
//
// Every width's taps lie in one union window of `span` taps: tap p (0 <= p < span) reads input
// position t + (p - left) * dilation for output position t. Width i ('same': left_i = k_i / 2,
// right_i = (k_i - 1) / 2; causal: left_i = k_i - 1, right_i = 0) uses taps
// p in [left - left_i, left + right_i], its kernel index being j = p - (left - left_i).
// `reverse` runs every sequence backwards (flip it within its length, convolve, flip back):
// left_i and right_i swap and the kernel is read backwards, j = k_i - 1 - (p - (left - left_i)).
// Inputs at or past a sequence's length, or before 0, read as zero; outputs at or past it are 0.
#pragma once

#include <c10/util/string_view.h>

#include <string>
#include <vector>

#include "common.h"

namespace sublocal {

struct MwcGeometry {
  int64_t batch = 0, time = 0, channels = 0, filters = 0, dilation = 1;
  int64_t left = 0, right = 0, span = 1;  // union window in taps: [-left, right]
  bool causal = false, reverse = false, relu = false;
  // The activation (MwcAct); relu is act == kRelu, fused into the micro-kernels' epilogue.
  int act = 0;
  std::vector<int64_t> width_filters, width_kernel, width_col, width_first_tap;
  // Columns of the output (of N) that tap p feeds: the smallest range [col_lo[p], col_hi[p])
  // holding every width that uses tap p (empty when lo >= hi).
  std::vector<int64_t> tap_col_lo, tap_col_hi;
};

// Taps of a width-k window before the output position (the other k - 1 - left lie after it).
inline int64_t mwc_left(int64_t k, bool causal, bool reverse) {
  const int64_t left = causal ? k - 1 : k / 2;
  return reverse ? k - 1 - left : left;
}

// The output's activation. tanh and sigmoid are the QRNN's gates (z and f, o); like relu
// their derivative is a function of the output y (1 - y^2, y (1 - y)), so the backward needs
// only the kept output.
enum MwcAct : int { kActNone = 0, kActRelu = 1, kActTanh = 2, kActSigmoid = 3 };

inline int mwc_parse_activation(c10::string_view activation, const char* op) {
  if (activation == "none") return kActNone;
  if (activation == "relu") return kActRelu;
  if (activation == "tanh") return kActTanh;
  if (activation == "sigmoid") return kActSigmoid;
  TORCH_CHECK(false, op, ": `activation` must be \"relu\", \"tanh\", \"sigmoid\" or \"none\", got \"",
              std::string(activation), "\"");
}

// Checks x, weights and bias and returns the geometry (lengths are checked by the kernels).
inline MwcGeometry mwc_geometry(const at::Tensor& x, at::TensorList weights,
                                const std::optional<at::Tensor>& bias, c10::string_view activation,
                                bool causal, bool reverse, int64_t dilation, const char* op) {
  check_float_tensor(x, op, "x", 3);
  TORCH_CHECK(!weights.empty(), op, ": `weights` must hold at least one (F_i, C, k_i) tensor, got none");
  TORCH_CHECK(dilation >= 1, op, ": `dilation` must be >= 1, got ", dilation);
  MwcGeometry g;
  g.batch = x.size(0);
  g.time = x.size(1);
  g.channels = x.size(2);
  g.dilation = dilation;
  g.causal = causal;
  g.reverse = reverse;
  g.act = mwc_parse_activation(activation, op);
  g.relu = g.act == kActRelu;
  for (size_t i = 0; i < weights.size(); ++i) {
    const at::Tensor& w = weights[i];
    const std::string name = "weights[" + std::to_string(i) + "]";
    check_float_tensor(w, op, name.c_str(), 3);
    check_like(w, x, op, name.c_str(), "x");
    TORCH_CHECK(w.size(1) == g.channels && w.size(2) >= 1, op, ": `", name, "` must have shape (F_i, ",
                g.channels, ", k_i) with k_i >= 1, got ", w.sizes());
    const int64_t k = w.size(2);
    g.width_filters.push_back(w.size(0));
    g.width_kernel.push_back(k);
    g.width_col.push_back(g.filters);
    g.filters += w.size(0);
    g.left = std::max(g.left, mwc_left(k, causal, reverse));
    g.right = std::max(g.right, k - 1 - mwc_left(k, causal, reverse));
  }
  g.span = g.left + g.right + 1;
  g.tap_col_lo.assign(g.span, g.filters);
  g.tap_col_hi.assign(g.span, 0);
  for (size_t i = 0; i < weights.size(); ++i) {
    const int64_t k = g.width_kernel[i];
    const int64_t first = g.left - mwc_left(k, causal, reverse);
    g.width_first_tap.push_back(first);
    if (g.width_filters[i] == 0) continue;
    for (int64_t p = first; p < first + k; ++p) {
      g.tap_col_lo[p] = std::min(g.tap_col_lo[p], g.width_col[i]);
      g.tap_col_hi[p] = std::max(g.tap_col_hi[p], g.width_col[i] + g.width_filters[i]);
    }
  }
  if (bias.has_value() && bias->defined()) {
    check_like(*bias, x, op, "bias", "x");
    check_shape(*bias, {g.filters}, op, "bias");
  }
  return g;
}

}  // namespace sublocal
