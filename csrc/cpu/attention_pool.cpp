// Attention pooling on the CPU: forward and fused backward.
//
// The h W_a products are nearly all the work (2 N D A multiply-adds for the scores, twice that
// for the backward, N = sum of lengths), so everything is organised around GEMMs on the valid
// rows only. A work item is a block of up to kRows consecutive valid steps of one sequence:
// those rows of h are one contiguous (rows, D) matrix, so nothing is packed or copied. Items
// are handed out dynamically to the intra-op threads; inside, each GEMM is one ATen call that
// runs MKL single-threaded (it is inside an OpenMP region).
//
// Forward, per item: u = h W_a (+ b_a) by GEMM straight into `activations`, tanh in place,
// e = . v_a, then the block's local softmax (max m_i, sum s_i, partial context) while its
// rows of h are still in cache; per sequence, the blocks are merged with exp(m_i - m)
// rescaling (the flash-decoding combine) and alpha is written (0 at padded steps). The forward
// keeps tanh(h W_a + b_a) of the valid rows (`activations`, N x A) for the backward, which then
// needs no recomputation: recomputing would cost a fourth GEMM where the eager peer runs three
// on all B T rows, and the 1.5x target would be out of reach. Nothing is stored for padding.
//
// Backward, per item: de_t = alpha_t (dalpha_t + dc . h_t - g_b) with
// g_b = sum_s alpha_s dalpha_s + dc . context_b (so no separate pass over h),
// r = de (1 - tanh^2) v_a in a thread-local (kRows, A) buffer, then dh = alpha dc + r W_a^T and
// dW_a += h^T r as two GEMMs; dv_a and db_a are column sums. No (B, T, A) or (N, A) tensor is
// allocated. (In a saturated softmax the exact de is ~0 and this form returns rounding noise
// of order eps |dalpha|, as any floating-point evaluation does; tests bound it.)
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/ThreadLocalState.h>
#include <ATen/ops/addmm.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/mm.h>
#include <ATen/ops/zeros.h>
#include <c10/core/ScalarType.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

#include "attention_pool.h"
#include "cpu/fp_mode.h"
#include "output_cache.h"

namespace sublocal {
namespace {

// Steps per work item. At `paper`, float32, 2 threads on the shared 2-core Xeon (AVX-512) CI
// machine, 64, 128, 256, 512 and whole sequences all measured within the noise of one another
// (1.7-1.9 CPU-seconds per forward+backward); 256 keeps one item's rows of h (512 KB at D=512)
// and activations (400 KB at A=400) in the 2 MB L2 while the item's passes run, and amortises
// MKL's packing of W_a over 256 rows.
constexpr int64_t kRows = 256;

// Runs f(item, worker) for every item in [0, n) on the intra-op threads, handing items out
// one at a time: sequences have random lengths, and on a shared machine one thread can be
// descheduled for a while, so a static split leaves the other idle at the end.
// worker < min(threads, n) indexes per-thread scratch. f calls ATen ops (GEMM, tanh), so
// each thread takes the caller's thread-local state (dispatch keys below autograd, grad mode).
template <typename F>
void parallel_items(int64_t n, const F& f) {
  if (n <= 0) return;
  const int64_t workers = std::min<int64_t>(at::get_num_threads(), n);
  std::atomic<int64_t> next{0};
  const at::ThreadLocalState state;
  at::parallel_for(0, workers, 1, [&](int64_t begin, int64_t end) {
    const FlushDenormalGuard flush;
    at::ThreadLocalStateGuard guard(state);
    for (int64_t w = begin; w < end; ++w) {
      for (int64_t it = next.fetch_add(1); it < n; it = next.fetch_add(1)) f(it, w);
    }
  });
}

// Work items (blocks of valid steps), in sequence order.
struct Plan {
  std::vector<int64_t> seq, start, rows, packed;  // per item: sequence, first step, steps, packed row
  std::vector<int64_t> seq_items;                 // B + 1: items of sequence b are [seq_items[b], seq_items[b+1])
  int64_t total_rows = 0;                         // N = sum of lengths
  int64_t size() const { return static_cast<int64_t>(seq.size()); }
};

Plan make_plan(const int64_t* lengths, int64_t batch) {
  Plan p;
  p.seq_items.reserve(batch + 1);
  for (int64_t b = 0; b < batch; ++b) {
    p.seq_items.push_back(p.size());
    for (int64_t s = 0; s < lengths[b]; s += kRows) {
      p.seq.push_back(b);
      p.start.push_back(s);
      p.rows.push_back(std::min(kRows, lengths[b] - s));
      p.packed.push_back(p.total_rows + s);
    }
    p.total_rows += lengths[b];
  }
  p.seq_items.push_back(p.size());
  return p;
}

// a . b as one running sum, in order. A 16-lane version (vectorised, measured forward best 231
// vs 251 ms at `paper` together with the huge-page change below) was tried and reverted: it
// changes the scores' rounding, and the seeded A-LSTM acceptance test
// (tests/models/test_synthetic_accuracy.py) then fell from its attention-hit threshold (0.65
// against 0.80), which depends on the exact float32 trajectory of training.
template <typename T>
inline T dot(const T* a, const T* b, int64_t n) {
  T s = 0;
  for (int64_t i = 0; i < n; ++i) s += a[i] * b[i];
  return s;
}

// out[i] = dot(a + i * lda, b, n) for rows i in [0, rows), eight rows at a time. Each row keeps
// its own running sum in the same order, so the results are dot's bits; the eight independent
// sums hide the add latency that one in-order sum is bound by (one add every 3-4 cycles).
template <typename T>
inline void dot_rows(const T* a, int64_t lda, int64_t rows, const T* b, int64_t n, T* out) {
  constexpr int64_t kGroup = 8;
  int64_t i = 0;
  for (; i + kGroup <= rows; i += kGroup) {
    T s[kGroup] = {};
    const T* ai = a + i * lda;
    for (int64_t k = 0; k < n; ++k) {
      const T bk = b[k];
      for (int64_t g = 0; g < kGroup; ++g) s[g] += ai[g * lda + k] * bk;
    }
    for (int64_t g = 0; g < kGroup; ++g) out[i + g] = s[g];
  }
  for (; i < rows; ++i) out[i] = dot(a + i * lda, b, n);
}

template <typename scalar_t>
void fwd_impl(const AttentionPoolArgs& a, const Plan& plan, at::Tensor& context, at::Tensor& alpha,
              at::Tensor& act) {
  using acc_t = at::opmath_type<scalar_t>;
  constexpr bool kSame = std::is_same_v<scalar_t, acc_t>;
  const auto acc_type = c10::CppTypeToScalarType<acc_t>::value;
  const auto& p = a.shape;
  const int64_t B = p.batch, T = p.time, D = p.dim, A = p.attn;
  const at::Tensor w = a.w_a.to(acc_type);
  const at::Tensor bias = p.has_bias ? a.b_a.to(acc_type) : at::Tensor();
  const at::Tensor v = a.v_a.to(acc_type).contiguous();
  const acc_t* vp = v.data_ptr<acc_t>();
  const at::Tensor h2 = a.h.view({B * T, D});
  const int64_t n_items = plan.size();
  std::vector<acc_t> scores(plan.total_rows), part_m(n_items), part_s(n_items), part_ctx(n_items * D);

  const int64_t n_workers = std::min<int64_t>(at::get_num_threads(), std::max<int64_t>(n_items, 1));
  std::vector<std::vector<acc_t>> probs(n_workers, std::vector<acc_t>(kRows));
  // Without `act` (inference: nothing kept for a backward) each worker computes its item's
  // activations in a (kRows, A) scratch block instead of the item's rows of `act`. MKL's GEMM
  // result depends on the output's address modulo 64 bytes (measured: 1-ulp differences at
  // odd float64 offsets, A = 7), so the block starts where the rows would in a (64-byte
  // aligned) `act`, and both paths give the same bits.
  constexpr int64_t kAlign = 64 / static_cast<int64_t>(sizeof(acc_t));
  std::vector<at::Tensor> scratch;
  if (!act.defined()) {
    for (int64_t w = 0; w < n_workers; ++w)
      scratch.push_back(at::empty({kRows * A + kAlign}, a.h.options().dtype(acc_type)));
  }
  parallel_items(n_items, [&](int64_t it, int64_t worker) {
    acc_t* prob = probs[worker].data();
    const int64_t b = plan.seq[it], n = plan.rows[it], row = plan.packed[it];
    const at::Tensor hb = h2.narrow(0, b * T + plan.start[it], n);
    const at::Tensor hb_acc = kSame ? hb : hb.to(acc_type);
    at::Tensor ab = act.defined() ? act.narrow(0, row, n)
                                  : scratch[worker].narrow(0, row * A % kAlign, n * A).view({n, A});
    if (p.has_bias) {
      at::addmm_out(ab, bias, hb_acc, w);
    } else {
      at::mm_out(ab, hb_acc, w);
    }
    ab.tanh_();  // ATen's vectorised tanh, single-threaded inside this parallel region
    const acc_t* ap = ab.data_ptr<acc_t>();
    acc_t* e = scores.data() + row;
    acc_t m = -std::numeric_limits<acc_t>::infinity();
    dot_rows(ap, A, n, vp, A, e);
    for (int64_t i = 0; i < n; ++i) m = std::max(m, e[i]);
    acc_t s = 0;
    for (int64_t i = 0; i < n; ++i) s += (prob[i] = std::exp(e[i] - m));
    acc_t* c = part_ctx.data() + it * D;
    std::fill_n(c, D, acc_t(0));
    const acc_t* hp = hb_acc.data_ptr<acc_t>();
    for (int64_t i = 0; i < n; ++i) {
      const acc_t pi = prob[i];
      const acc_t* hi = hp + i * D;
      for (int64_t d = 0; d < D; ++d) c[d] += pi * hi[d];
    }
    part_m[it] = m;
    part_s[it] = s;
  });

  const int64_t* L = a.lengths.data_ptr<int64_t>();
  scalar_t* ctx_out = context.data_ptr<scalar_t>();
  scalar_t* alpha_out = alpha.data_ptr<scalar_t>();
  at::parallel_for(0, B, 1, [&](int64_t begin, int64_t end) {
    const FlushDenormalGuard flush;
    std::vector<acc_t> c(D);
    for (int64_t b = begin; b < end; ++b) {
      const int64_t i0 = plan.seq_items[b], i1 = plan.seq_items[b + 1];
      acc_t m = -std::numeric_limits<acc_t>::infinity();
      for (int64_t i = i0; i < i1; ++i) m = std::max(m, part_m[i]);
      acc_t s = 0;
      std::fill(c.begin(), c.end(), acc_t(0));
      for (int64_t i = i0; i < i1; ++i) {
        const acc_t w_i = std::exp(part_m[i] - m);
        s += w_i * part_s[i];
        const acc_t* pc = part_ctx.data() + i * D;
        for (int64_t d = 0; d < D; ++d) c[d] += w_i * pc[d];
      }
      const acc_t inv = acc_t(1) / s;
      for (int64_t d = 0; d < D; ++d) ctx_out[b * D + d] = static_cast<scalar_t>(c[d] * inv);
      const acc_t* e = scores.data() + plan.packed[i0];
      for (int64_t t = 0; t < L[b]; ++t) alpha_out[b * T + t] = static_cast<scalar_t>(std::exp(e[t] - m) * inv);
      std::fill(alpha_out + b * T + L[b], alpha_out + (b + 1) * T, scalar_t(0));
    }
  });
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> attention_pool_fwd_cpu(const at::Tensor& h, const std::optional<at::Tensor>& lengths,
                                                                      const at::Tensor& w_a, const at::Tensor& v_a,
                                                                      const std::optional<at::Tensor>& b_a) {
  const char* op = "sublocal::attention_pool_fwd";
  auto a = attention_pool_prepare(op, h, lengths, w_a, v_a, b_a);
  const auto& p = a.shape;
  check_length_values(a.lengths, p.time, op);
  const Plan plan = make_plan(a.lengths.data_ptr<int64_t>(), p.batch);
  auto context = at::empty({p.batch, p.dim}, a.h.options());
  auto alpha = at::empty({p.batch, p.time}, a.h.options());
  // From cpu_output for its huge-page-advised block (128 MB at `paper`: 4 KiB pages cost one
  // fault each on first touch). Its size follows sum(lengths), which changes batch to batch, so
  // with the opt-in cache on, its blocks would rarely be reused.
  auto act = cpu_output({plan.total_rows, p.attn}, a.h.options().dtype(state_dtype(a.h.scalar_type())));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, a.h.scalar_type(), "attention_pool_fwd_cpu",
                                  [&] { fwd_impl<scalar_t>(a, plan, context, alpha, act); });
  return {context, alpha, act};
}

// The forward without `activations`, for when no gradient is needed (sublocal::attention_pool_infer).
std::tuple<at::Tensor, at::Tensor> attention_pool_infer_cpu(const at::Tensor& h, const std::optional<at::Tensor>& lengths,
                                                            const at::Tensor& w_a, const at::Tensor& v_a,
                                                            const std::optional<at::Tensor>& b_a) {
  const char* op = "sublocal::attention_pool_infer";
  auto a = attention_pool_prepare(op, h, lengths, w_a, v_a, b_a);
  const auto& p = a.shape;
  check_length_values(a.lengths, p.time, op);
  const Plan plan = make_plan(a.lengths.data_ptr<int64_t>(), p.batch);
  auto context = at::empty({p.batch, p.dim}, a.h.options());
  auto alpha = at::empty({p.batch, p.time}, a.h.options());
  at::Tensor none;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, a.h.scalar_type(), "attention_pool_infer_cpu",
                                  [&] { fwd_impl<scalar_t>(a, plan, context, alpha, none); });
  return {context, alpha};
}

template <typename scalar_t>
void bwd_impl(const AttentionPoolArgs& a, const Plan& plan, const at::Tensor& grad_context,
              const at::Tensor& grad_alpha, const at::Tensor& context, const at::Tensor& alpha,
              const at::Tensor& act, at::Tensor& grad_h, at::Tensor& grad_w, at::Tensor& grad_v, at::Tensor& grad_b) {
  using acc_t = at::opmath_type<scalar_t>;
  constexpr bool kSame = std::is_same_v<scalar_t, acc_t>;
  const auto acc_type = c10::CppTypeToScalarType<acc_t>::value;
  const auto& p = a.shape;
  const int64_t B = p.batch, T = p.time, D = p.dim, A = p.attn;
  const int64_t* L = a.lengths.data_ptr<int64_t>();
  const at::Tensor wt = a.w_a.to(acc_type).t();
  const at::Tensor v = a.v_a.to(acc_type).contiguous();
  const at::Tensor dc = grad_context.to(acc_type).contiguous();
  const acc_t* vp = v.data_ptr<acc_t>();
  const acc_t* dcp = dc.data_ptr<acc_t>();
  const scalar_t* ga = grad_alpha.defined() ? grad_alpha.data_ptr<scalar_t>() : nullptr;
  const scalar_t* al = alpha.data_ptr<scalar_t>();
  const scalar_t* cx = context.data_ptr<scalar_t>();
  const at::Tensor h2 = a.h.view({B * T, D});
  at::Tensor gh2 = grad_h.view({B * T, D});

  // g_b = sum_s alpha_s dalpha_s, with dalpha_s = grad_alpha_s + dc . h_s, is
  // sum_s alpha_s grad_alpha_s + dc . context: no pass over h needed.
  std::vector<acc_t> g(B);
  at::parallel_for(0, B, 16, [&](int64_t begin, int64_t end) {
    const FlushDenormalGuard flush;
    for (int64_t b = begin; b < end; ++b) {
      acc_t s = 0;
      if (ga != nullptr) {
        for (int64_t t = 0; t < L[b]; ++t) s += static_cast<acc_t>(al[b * T + t]) * static_cast<acc_t>(ga[b * T + t]);
      }
      for (int64_t d = 0; d < D; ++d) s += dcp[b * D + d] * static_cast<acc_t>(cx[b * D + d]);
      g[b] = s;
    }
  });

  // dW_a, dv_a, db_a are summed per group of consecutive items, then over groups in a fixed
  // order: deterministic whatever thread runs which group. Groups are claimed dynamically.
  const int64_t n_items = plan.size();
  const int64_t n_threads = at::get_num_threads();
  // 8 groups per thread keep the threads within about 1/16 of each other at the end; the
  // partial dW_a are capped at 64 MB (12.5 MB at `paper` with 2 threads).
  const int64_t budget = (int64_t{64} << 20) / std::max<int64_t>(D * A * static_cast<int64_t>(sizeof(acc_t)), 1);
  const int64_t n_groups = std::max<int64_t>(1, std::min({n_items, 8 * n_threads, std::max(n_threads, budget)}));
  const int64_t per_group = (n_items + n_groups - 1) / n_groups;
  auto acc_opts = a.h.options().dtype(acc_type);
  at::Tensor dw_part = at::zeros({n_groups, D, A}, acc_opts);
  at::Tensor dv_part = at::zeros({n_groups, A}, acc_opts);
  at::Tensor db_part = at::zeros({n_groups, A}, acc_opts);
  const int64_t n_workers = std::min(n_threads, n_groups);
  std::vector<at::Tensor> rbufs(n_workers), dhbufs(n_workers);
  std::vector<std::vector<acc_t>> de_bufs(n_workers, std::vector<acc_t>(kRows)),
      al_bufs(n_workers, std::vector<acc_t>(kRows));
  for (int64_t w = 0; w < n_workers; ++w) {
    rbufs[w] = at::empty({kRows, A}, acc_opts);
    if (!kSame) dhbufs[w] = at::empty({kRows, D}, acc_opts);
  }
  parallel_items(n_groups, [&](int64_t group, int64_t worker) {
    at::Tensor dw = dw_part.select(0, group);
    acc_t* dv = dv_part.data_ptr<acc_t>() + group * A;
    acc_t* db = db_part.data_ptr<acc_t>() + group * A;
    acc_t* de = de_bufs[worker].data();
    acc_t* al_acc = al_bufs[worker].data();
    for (int64_t it = group * per_group; it < std::min(n_items, (group + 1) * per_group); ++it) {
      const int64_t b = plan.seq[it], n = plan.rows[it], t0 = plan.start[it];
      const at::Tensor hb = h2.narrow(0, b * T + t0, n);
      const at::Tensor hb_acc = kSame ? hb : hb.to(acc_type);
      const acc_t* hp = hb_acc.data_ptr<acc_t>();
      const acc_t* dcb = dcp + b * D;
      dot_rows(hp, D, n, dcb, D, de);  // dc . h_t, then de in place
      for (int64_t i = 0; i < n; ++i) {
        const int64_t t = b * T + t0 + i;
        al_acc[i] = static_cast<acc_t>(al[t]);
        const acc_t gai = ga != nullptr ? static_cast<acc_t>(ga[t]) : acc_t(0);
        de[i] = al_acc[i] * (gai + de[i] - g[b]);
      }
      at::Tensor r = rbufs[worker].narrow(0, 0, n);
      acc_t* rp = r.data_ptr<acc_t>();
      const acc_t* ap = act.data_ptr<acc_t>() + plan.packed[it] * A;
      for (int64_t i = 0; i < n; ++i) {
        const acc_t dei = de[i];
        const acc_t* th = ap + i * A;
        acc_t* ri = rp + i * A;
        for (int64_t k = 0; k < A; ++k) {
          dv[k] += dei * th[k];
          ri[k] = dei * (acc_t(1) - th[k] * th[k]) * vp[k];
          db[k] += ri[k];
        }
      }
      at::Tensor dhb = kSame ? gh2.narrow(0, b * T + t0, n) : dhbufs[worker].narrow(0, 0, n);
      acc_t* dhp = dhb.data_ptr<acc_t>();
      for (int64_t i = 0; i < n; ++i) {
        for (int64_t d = 0; d < D; ++d) dhp[i * D + d] = al_acc[i] * dcb[d];
      }
      dhb.addmm_(r, wt);
      if constexpr (!kSame) gh2.narrow(0, b * T + t0, n).copy_(dhb);
      dw.addmm_(hb_acc.t(), r);
    }
  });

  scalar_t* ghp = grad_h.data_ptr<scalar_t>();
  at::parallel_for(0, B, 16, [&](int64_t begin, int64_t end) {
    const FlushDenormalGuard flush;
    for (int64_t b = begin; b < end; ++b) std::fill(ghp + (b * T + L[b]) * D, ghp + (b + 1) * T * D, scalar_t(0));
  });
  grad_w.copy_(dw_part.sum(0));
  grad_v.copy_(dv_part.sum(0));
  if (p.has_bias) grad_b.copy_(db_part.sum(0));
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> attention_pool_bwd_cpu(
    const at::Tensor& grad_context, const std::optional<at::Tensor>& grad_alpha, const at::Tensor& h,
    const std::optional<at::Tensor>& lengths, const at::Tensor& w_a, const at::Tensor& v_a,
    const std::optional<at::Tensor>& b_a, const at::Tensor& context, const at::Tensor& alpha, const at::Tensor& activations) {
  const char* op = "sublocal::attention_pool_bwd";
  auto a = attention_pool_prepare(op, h, lengths, w_a, v_a, b_a);
  const auto& p = a.shape;
  check_length_values(a.lengths, p.time, op);
  check_like(grad_context, a.h, op, "grad_context", "h");
  check_shape(grad_context, {p.batch, p.dim}, op, "grad_context");
  check_like(context, a.h, op, "context", "h");
  check_shape(context, {p.batch, p.dim}, op, "context");
  check_like(alpha, a.h, op, "alpha", "h");
  check_shape(alpha, {p.batch, p.time}, op, "alpha");
  at::Tensor ga;
  if (grad_alpha.has_value() && grad_alpha->defined()) {
    check_like(*grad_alpha, a.h, op, "grad_alpha", "h");
    check_shape(*grad_alpha, {p.batch, p.time}, op, "grad_alpha");
    ga = grad_alpha->contiguous();
  }
  const Plan plan = make_plan(a.lengths.data_ptr<int64_t>(), p.batch);
  const auto acc_type = state_dtype(a.h.scalar_type());
  TORCH_CHECK(activations.scalar_type() == acc_type, op, ": `activations` must have dtype ", acc_type, ", got ",
              activations.scalar_type());
  TORCH_CHECK(activations.device() == a.h.device(), op, ": `activations` is on ", activations.device(),
              " but `h` is on ", a.h.device());
  check_shape(activations, {plan.total_rows, p.attn}, op, "activations");
  const at::Tensor act = activations.contiguous();
  auto grad_h = cpu_output({p.batch, p.time, p.dim}, a.h.options());
  auto grad_w = at::empty({p.dim, p.attn}, a.h.options());
  auto grad_v = at::empty({p.attn}, a.h.options());
  auto grad_b = at::empty({p.has_bias ? p.attn : 0}, a.h.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, a.h.scalar_type(), "attention_pool_bwd_cpu", [&] {
    bwd_impl<scalar_t>(a, plan, grad_context.contiguous(), ga, context.contiguous(), alpha.contiguous(), act, grad_h,
                       grad_w, grad_v, grad_b);
  });
  return {grad_h, grad_w, grad_v, grad_b};
}

}  // namespace

TORCH_LIBRARY_IMPL(sublocal, CPU, m) {
  m.impl("attention_pool_fwd", &attention_pool_fwd_cpu);
  m.impl("attention_pool_bwd", &attention_pool_bwd_cpu);
  m.impl("attention_pool_infer", &attention_pool_infer_cpu);
}

}  // namespace sublocal
