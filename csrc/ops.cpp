// Every schema of the `sublocal` library, in one place.
//
// Kernels live beside this file: csrc/cpu/<op>.cpp registers the CPU kernels,
// csrc/cuda/<op>_*.cu the CUDA C++ kernels; Python (sublocal_kernels/ops/<op>/register.py)
// adds the fake (meta) kernels, the autograd formulas and the Triton CUDA kernels.
//
// Ops named `_<op>_*_cuda` are the CUDA C++ backends of an op whose CUDA default is a Triton
// kernel: the CUDA kernel registered from Python for `<op>_*` calls one or the other
// (SUBLOCAL_<OP>_BACKEND=triton|cuda), so the dispatcher still picks the device and Python
// only picks between two GPU implementations of the same contract.

#include <Python.h>
#include <torch/library.h>

extern "C" {
// `import sublocal_kernels._C` runs the static registrations below; the module itself is empty.
// Only the limited Python API is used, so one abi3 binary serves every Python >= 3.9.
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {
      PyModuleDef_HEAD_INIT,
      "_C",  // name
      "sublocal-kernels C++/CUDA operator library (registered with torch.ops.sublocal)",
      -1,       // size of per-interpreter state
      nullptr,  // methods
  };
  return PyModule_Create(&module_def);
}
}

TORCH_LIBRARY(sublocal, m) {
  // ---- fo-pool (QRNN): c_t = f_t * c_{t-1} + (1 - f_t) * z_t ; h_t = o_t * c_t -------------
  // checkpoints: (B, T // chunk + 1, D) float32, the state before processing step k * chunk
  // (in processing order), saved for the backward, which recomputes c chunk by chunk.
  m.def(
      "fo_pool_fwd(Tensor forget, Tensor z, Tensor? output, Tensor? lengths, Tensor? initial, "
      "bool reverse, int chunk) -> (Tensor h, Tensor c_last, Tensor checkpoints)");
  // grad_output is an empty tensor when output is None.
  m.def(
      "fo_pool_bwd(Tensor grad_h, Tensor grad_c_last, Tensor forget, Tensor z, Tensor? output, "
      "Tensor? lengths, Tensor checkpoints, bool reverse, int chunk) -> "
      "(Tensor grad_forget, Tensor grad_z, Tensor grad_output, Tensor grad_initial)");
  // fo_pool_fwd without `checkpoints`, for when no gradient is needed; `chunk` is the tile length
  // of the GPU kernels' scan (the CPU kernel does not use it).
  m.def(
      "fo_pool_infer(Tensor forget, Tensor z, Tensor? output, Tensor? lengths, Tensor? initial, "
      "bool reverse, int chunk) -> (Tensor h, Tensor c_last)");
  // ---- CUDA C++ backends of fo-pool (see the note at the top) -------------------------------
  m.def(
      "_fo_pool_fwd_cuda(Tensor forget, Tensor z, Tensor? output, Tensor? lengths, Tensor? initial, "
      "bool reverse, int chunk) -> (Tensor h, Tensor c_last, Tensor checkpoints)");
  m.def(
      "_fo_pool_bwd_cuda(Tensor grad_h, Tensor grad_c_last, Tensor forget, Tensor z, Tensor? output, "
      "Tensor? lengths, Tensor checkpoints, bool reverse, int chunk) -> "
      "(Tensor grad_forget, Tensor grad_z, Tensor grad_output, Tensor grad_initial)");
  // The CPU output cache's `_cpu_cache_info() -> int[]` and `_cpu_cache_empty()` take no
  // tensors, so they are defined with their (catch-all) kernels in csrc/cpu/output_cache.cpp.

  // ---- lstm: packed variable-length (bidirectional) LSTM, nn.LSTM semantics ------------------
  // weights: one nn.LSTM layer's tensors in _flat_weights order (weight_ih, weight_hh[, bias_ih,
  // bias_hh] per direction, forward direction first). gates / states are the forward's saved
  // workspace for the backward; their row layout belongs to each device's kernels (csrc/lstm.h).
  // sequences=False: `out` is an empty (0,) tensor and is never computed (a classifier on the
  // final states: at `paper` that is 262 MB of float32 not written, nor its pages touched).
  // grad_out None means zeros: `out` was not used (a classifier on the final states), and no
  // (B, T, D H) tensor of zeros is made for it. The same for mlstm_bwd.
  m.def(
      "lstm_fwd(Tensor x, Tensor? lengths, Tensor[] weights, Tensor? h0, Tensor? c0, bool bidirectional, "
      "bool sequences=True) -> "
      "(Tensor out, Tensor h_n, Tensor c_n, Tensor gates, Tensor states)");
  m.def(
      "lstm_bwd(Tensor? grad_out, Tensor grad_h_n, Tensor grad_c_n, Tensor x, Tensor? lengths, Tensor[] weights, "
      "Tensor? h0, Tensor? c0, Tensor gates, Tensor states, bool bidirectional) -> "
      "(Tensor grad_x, Tensor[] grad_weights, Tensor grad_h0, Tensor grad_c0)");
  // lstm_fwd without the workspace, for when no gradient is needed (no autograd formula: its
  // registered backward refuses).
  // mean=True: `out` is (B, D H), each direction's hidden states averaged over the sequence's
  // valid steps (a pooled embedding), and the (B, T, D H) sequence is never written. The same
  // for mlstm_infer.
  m.def(
      "lstm_infer(Tensor x, Tensor? lengths, Tensor[] weights, Tensor? h0, Tensor? c0, bool bidirectional, "
      "bool sequences=True, bool mean=False) -> "
      "(Tensor out, Tensor h_n, Tensor c_n)");
  // The multiplicative cell (UniRep's mLSTM): m_t = (W_mx x_t) * (W_mh h_{t-1}), the gates from
  // x_t and m_t. weights per direction: weight_ih (4H, C), weight_hh (4H, H)[, bias_ih, bias_hh],
  // weight_mx (H, C), weight_mh (H, H). gates (D, N, 5H) and states (D, N, 3H) are its workspace
  // (csrc/cpu/lstm/cell.h); the results and the lengths contract are lstm_fwd's.
  m.def(
      "mlstm_fwd(Tensor x, Tensor? lengths, Tensor[] weights, Tensor? h0, Tensor? c0, bool bidirectional, "
      "bool sequences=True) -> "
      "(Tensor out, Tensor h_n, Tensor c_n, Tensor gates, Tensor states)");
  m.def(
      "mlstm_bwd(Tensor? grad_out, Tensor grad_h_n, Tensor grad_c_n, Tensor x, Tensor? lengths, Tensor[] weights, "
      "Tensor? h0, Tensor? c0, Tensor gates, Tensor states, bool bidirectional) -> "
      "(Tensor grad_x, Tensor[] grad_weights, Tensor grad_h0, Tensor grad_c0)");
  m.def(
      "mlstm_infer(Tensor x, Tensor? lengths, Tensor[] weights, Tensor? h0, Tensor? c0, bool bidirectional, "
      "bool sequences=True, bool mean=False) -> "
      "(Tensor out, Tensor h_n, Tensor c_n)");

  // ---- attention pooling: e_t = tanh(h_t W_a + b_a) . v_a ; alpha = softmax over valid steps ;
  // context = sum_t alpha_t h_t ---------------------------------------------------------------
  // activations: (sum(lengths), A) in the accumulation dtype, tanh(h_t W_a + b_a) of the valid
  // steps kept by the CPU kernel for its backward; (0, A) from the GPU kernels, which recompute
  // it. grad_b_a is (0,) when b_a is None; grad_alpha None means zeros.
  m.def(
      "attention_pool_fwd(Tensor h, Tensor? lengths, Tensor w_a, Tensor v_a, Tensor? b_a) -> "
      "(Tensor context, Tensor alpha, Tensor activations)");
  m.def(
      "attention_pool_bwd(Tensor grad_context, Tensor? grad_alpha, Tensor h, Tensor? lengths, Tensor w_a, "
      "Tensor v_a, Tensor? b_a, Tensor context, Tensor alpha, Tensor activations) -> "
      "(Tensor grad_h, Tensor grad_w_a, Tensor grad_v_a, Tensor grad_b_a)");
  // attention_pool_fwd without `activations`, for when no gradient is needed.
  m.def(
      "attention_pool_infer(Tensor h, Tensor? lengths, Tensor w_a, Tensor v_a, Tensor? b_a) -> "
      "(Tensor context, Tensor alpha)");

  // ---- channel-wise attention pooling: alpha[b, :, d] = softmax of logits[b, :, d] over valid
  // steps ; context[b, d] = sum_t alpha values ; maxpool[b, d] = max over valid steps of values --
  // alpha is (B, T, D) when return_alpha, else (0,). lse (B, D) in the accumulation dtype (the
  // log-sum-exp of the logits over valid steps) and argmax (B, D) int64 (the max-pool's step) are
  // the forward's workspaces for the backward, which recomputes alpha = exp(logits - lse). The
  // grad_* inputs may be None (the output was unused: zeros); a grad_values / grad_logits output
  // is an empty tensor unless need_grad_values / need_grad_logits.
  m.def(
      "channel_attention_pool_fwd(Tensor values, Tensor logits, Tensor? lengths, bool return_alpha) -> "
      "(Tensor context, Tensor maxpool, Tensor alpha, Tensor lse, Tensor argmax)");
  m.def(
      "channel_attention_pool_bwd(Tensor? grad_context, Tensor? grad_maxpool, Tensor? grad_alpha, Tensor values, "
      "Tensor logits, Tensor? lengths, Tensor context, Tensor lse, Tensor argmax, bool need_grad_values, "
      "bool need_grad_logits) -> (Tensor grad_values, Tensor grad_logits)");

  // ---- multi-width conv1d: every width of a conv bank in one pass ---------------------------
  // x (B, T, C); weights[i] (F_i, C, k_i); bias (sum F_i,) the widths' biases concatenated;
  // y (B, T, sum F_i). activation: "relu", "tanh", "sigmoid" or "none". causal: taps t-(k-1)*d .. t, else
  // t-(k/2)*d .. t+((k-1)/2)*d; reverse runs each sequence backwards (flip within its length,
  // convolve, flip back). Inputs at or past lengths[b] read as zero; outputs there are 0.
  m.def(
      "multiwidth_conv1d_fwd(Tensor x, Tensor? lengths, Tensor[] weights, Tensor? bias, str activation, "
      "bool causal, bool reverse, int dilation) -> Tensor");
  // y is the forward output (the activation's derivative is recomputed from it: relu y > 0,
  // tanh 1 - y^2, sigmoid y (1 - y)), None without activation.
  // grad_x is an empty tensor unless need_grad_x; grad_weights is empty and grad_bias an empty
  // tensor unless need_grad_weights.
  m.def(
      "multiwidth_conv1d_bwd(Tensor grad_y, Tensor x, Tensor? lengths, Tensor[] weights, Tensor? y, "
      "str activation, bool causal, bool reverse, int dilation, bool need_grad_x, bool need_grad_weights) -> "
      "(Tensor grad_x, Tensor[] grad_weights, Tensor grad_bias)");
}
