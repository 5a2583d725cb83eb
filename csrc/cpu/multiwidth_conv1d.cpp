// Multi-width conv1d on the CPU: forward and fused backward, every width in one pass.
//
// Work items are (sequence, tile of kTile positions below its length); padded positions are
// never computed. Each item copies its input rows plus the halo the widest window needs into a
// small float buffer (zeros outside [0, length): "inputs at or past the length count as zero"),
// then a register-tiled micro-kernel accumulates every tap of every width straight from that
// buffer: no im2col copy, no per-width pass, each output row written once after bias and ReLU.
//
// Weights are packed per tap: W[tap] is (C, Npad) holding, in column f, the weight of the width
// that owns f when that width uses the tap and 0 otherwise; per tap only the vectors of columns
// that some width uses are computed. The backward builds, per item, dy * (y > 0) (the ReLU mask
// recomputed from the kept output) for the tile plus its halo, then computes the input gradient
// (the same product with the taps mirrored and W transposed) and the weight gradient (a
// reduction over positions into per-chunk accumulators, summed in a fixed order, so results do
// not depend on the thread count).
//
// The micro-kernels are compiled for AVX-512, AVX2+FMA and the baseline instruction set and
// chosen at run time (SUBLOCAL_CPU_ISA=avx512|avx2|baseline forces one, and
// SUBLOCAL_MWC_DX=normal|transposed one layout of the input gradient; the tests use both).
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/core/LegacyTypeDispatch.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/from_blob.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdlib>
#include <string>
#include <type_traits>
#include <vector>

#include "cpu/fp_mode.h"
#include "multiwidth_conv1d.h"
#include "output_cache.h"

namespace sublocal {
namespace {

// Positions per work item. At `paper` fwd+bwd (2 threads, CPU time, best of 3 x 7 here):
// 104 ms at 128 against 129 at 32, 116 at 64 and 113 at 256; ~650 items left to balance.
constexpr int64_t kTile = 128;
// Extra rows/elements every buffer carries so register tiles may run past the last valid row.
constexpr int64_t kPadRows = 8;
// Columns are padded to a multiple of 16 (one AVX-512 float vector; a whole number of vectors
// for every instruction set and dtype).
constexpr int64_t kColAlign = 16;

int64_t round_up(int64_t v, int64_t m) { return (v + m - 1) / m * m; }

// Row stride (elements) of a matrix the micro-kernels stream: a whole number of kColAlign
// columns, and an odd one, so consecutive rows do not fall on the same few L1 sets. With rows
// 2 KiB apart (C=512 float) the input gradient ran 2.2x slower than with 2 KiB + 64 B.
int64_t stream_ld(int64_t n) {
  const int64_t ld = round_up(std::max<int64_t>(n, 1), kColAlign);
  return (ld / kColAlign) % 2 ? ld : ld + kColAlign;
}

template <typename T>
struct MwcFwdTile {
  const T* xbuf;  // (rows + (span-1)*dilation + pad) x channels
  const T* weight;  // (span * channels) x ldw
  const T* bias;    // (npad,), zeros where there is none
  const int64_t* col_lo;
  const int64_t* col_hi;
  T* out;  // rows x ldo; columns [0, ncols) are written
  int64_t rows, channels, npad, ldw, span, dilation, ldo, ncols;
  bool relu;
};

template <typename T>
struct MwcDxTile {
  const T* dy;      // (rows + (span-1)*dilation + pad) x ldy
  const T* weight;  // (span * npad) x ldw: per tap the forward's transposed
  const int64_t* col_lo;
  const int64_t* col_hi;
  T* out;  // rows x ldo; columns [0, ncols) are written
  int64_t rows, npad, ldy, cpad, ldw, span, dilation, ldo, ncols;
};

template <typename T>
struct MwcDxtTile {
  const T* dyt;     // npad x ldt: dy transposed, column j = row j of the dy buffer
  const T* weight;  // the forward's (span * channels + pad) x ldw
  const int64_t* col_lo;
  const int64_t* col_hi;
  T* out;  // round_up(channels, rows of a register tile) x ldo, positions along ldo
  int64_t rows, channels, ldw, span, dilation, ldt, ldo;
};

template <typename T>
struct MwcDwTile {
  const T* xbuf;  // as in the forward
  const T* dy;    // rows x ldy
  const int64_t* col_lo;
  const int64_t* col_hi;
  T* grad;  // (span, channels, npad), accumulated into
  int64_t rows, channels, npad, ldy, span, dilation;
};

template <typename T>
struct MwcKernels {
  void (*fwd)(const MwcFwdTile<T>&);
  void (*dx)(const MwcDxTile<T>&);
  void (*dxt)(const MwcDxtTile<T>&);
  void (*dw)(const MwcDwTile<T>&);
  int64_t lanes, rows;
};

// ---- the micro-kernels, once per instruction set ---------------------------------------------
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define SUBLOCAL_MWC_X86 1
#pragma GCC push_options
#pragma GCC target("avx512f,avx512vl,avx512dq,avx512bw,avx2,fma")
namespace isa_avx512 {
// 6 rows x 4 vectors: 24 of the 32 zmm registers accumulate.
#define SUBLOCAL_VBYTES 64
#define SUBLOCAL_MR 6
#define SUBLOCAL_NV 4
#include "multiwidth_conv1d_isa.h"
#undef SUBLOCAL_VBYTES
#undef SUBLOCAL_MR
#undef SUBLOCAL_NV
}  // namespace isa_avx512
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx2,fma")
namespace isa_avx2 {
// 4 rows x 3 vectors: 12 of the 16 ymm registers accumulate.
#define SUBLOCAL_VBYTES 32
#define SUBLOCAL_MR 4
#define SUBLOCAL_NV 3
#include "multiwidth_conv1d_isa.h"
#undef SUBLOCAL_VBYTES
#undef SUBLOCAL_MR
#undef SUBLOCAL_NV
}  // namespace isa_avx2
#pragma GCC pop_options
#endif

namespace isa_baseline {
#define SUBLOCAL_VBYTES 16
#define SUBLOCAL_MR 4
#define SUBLOCAL_NV 3
#include "multiwidth_conv1d_isa.h"
#undef SUBLOCAL_VBYTES
#undef SUBLOCAL_MR
#undef SUBLOCAL_NV
}  // namespace isa_baseline

template <typename T>
MwcKernels<T> select_kernels() {
  const char* forced = std::getenv("SUBLOCAL_CPU_ISA");
  const std::string want = forced ? forced : "";
  TORCH_CHECK(want.empty() || want == "avx512" || want == "avx2" || want == "baseline",
              "SUBLOCAL_CPU_ISA must be avx512, avx2 or baseline, got \"", want, "\"");
#ifdef SUBLOCAL_MWC_X86
  static const bool has_avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
                                 __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512bw");
  static const bool has_avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  if ((want.empty() || want == "avx512") && has_avx512) return isa_avx512::kernels<T>();
  if ((want.empty() || want == "avx512" || want == "avx2") && has_avx2) return isa_avx2::kernels<T>();
#endif
  return isa_baseline::kernels<T>();
}

// ---- shared driver ---------------------------------------------------------------------------

// tanh or sigmoid in place on rows x cols of a buffer with row stride ld, by ATen's vectorised
// kernels (single-threaded inside the parallel region): the values torch.tanh / torch.sigmoid
// give on the whole output, elementwise.
template <typename acc_t>
void activate_rows(int act, acc_t* base, int64_t rows, int64_t cols, int64_t ld) {
  at::Tensor t = at::from_blob(base, {rows, cols}, {ld, 1},
                               at::TensorOptions().dtype(c10::CppTypeToScalarType<acc_t>::value));
  if (act == kActTanh) {
    t.tanh_();
  } else {
    t.sigmoid_();
  }
}

// dy (a row of cols, in place) times the activation's derivative, from the output row y: relu
// y > 0, tanh 1 - y^2, sigmoid (1 - y) y; written as ATen's tanh_backward / sigmoid_backward.
template <typename scalar_t, typename acc_t>
void activation_backward(int act, int64_t cols, const scalar_t* y, acc_t* dy) {
  if (act == kActRelu) {
    for (int64_t n = 0; n < cols; ++n) dy[n] = static_cast<acc_t>(y[n]) > acc_t(0) ? dy[n] : acc_t(0);
  } else if (act == kActTanh) {
    for (int64_t n = 0; n < cols; ++n) {
      const acc_t v = static_cast<acc_t>(y[n]);
      dy[n] = dy[n] * (acc_t(1) - v * v);
    }
  } else if (act == kActSigmoid) {
    for (int64_t n = 0; n < cols; ++n) {
      const acc_t v = static_cast<acc_t>(y[n]);
      dy[n] = dy[n] * (acc_t(1) - v) * v;
    }
  }
}

struct Item {
  int64_t b, t0, rows;
};

std::vector<Item> make_items(const MwcGeometry& g, const int64_t* lengths) {
  std::vector<Item> items;
  for (int64_t b = 0; b < g.batch; ++b) {
    const int64_t L = lengths ? lengths[b] : g.time;
    for (int64_t t0 = 0; t0 < L; t0 += kTile) items.push_back({b, t0, std::min(kTile, L - t0)});
  }
  return items;
}

// Rows [first, first + count) of sequence b of a (B, T, width) tensor into buf (count x ld, acc_t),
// zero outside [0, L) and in columns [width, ld).
template <typename scalar_t, typename acc_t>
void load_rows(const scalar_t* src, int64_t T, int64_t width, int64_t ld, int64_t b, int64_t L, int64_t first,
               int64_t count, acc_t* buf) {
  for (int64_t r = 0; r < count; ++r) {
    const int64_t s = first + r;
    acc_t* dst = buf + r * ld;
    if (s < 0 || s >= L) {
      std::fill_n(dst, ld, acc_t(0));
      continue;
    }
    const scalar_t* row = src + (b * T + s) * width;
    for (int64_t c = 0; c < width; ++c) dst[c] = static_cast<acc_t>(row[c]);
    std::fill(dst + width, dst + ld, acc_t(0));
  }
}

// The packed forward weights ((span * C) x ld): W[tap * C + c][col_i + f] = weights[i][f][c][j]
// with j = tap - first_i (reverse: k_i - 1 - (tap - first_i), the kernel read backwards).
template <typename scalar_t, typename acc_t>
std::vector<acc_t> pack_forward(const MwcGeometry& g, const std::vector<at::Tensor>& w, int64_t ld) {
  // kPadRows extra rows: the transposed input gradient's register tiles read past channel C.
  std::vector<acc_t> packed((g.span * g.channels + kPadRows) * ld, acc_t(0));
  for (size_t i = 0; i < w.size(); ++i) {
    const scalar_t* src = w[i].data_ptr<scalar_t>();
    const int64_t F = g.width_filters[i], k = g.width_kernel[i];
    for (int64_t f = 0; f < F; ++f)
      for (int64_t c = 0; c < g.channels; ++c)
        for (int64_t j = 0; j < k; ++j)
          packed[((g.width_first_tap[i] + j) * g.channels + c) * ld + g.width_col[i] + f] =
              static_cast<acc_t>(src[(f * g.channels + c) * k + (g.reverse ? k - 1 - j : j)]);
  }
  return packed;
}

// The packed backward-data weights ((span * npad) x ld): the forward's transposed per tap.
template <typename scalar_t, typename acc_t>
std::vector<acc_t> pack_backward(const MwcGeometry& g, const std::vector<at::Tensor>& w, int64_t npad,
                                 int64_t ld) {
  std::vector<acc_t> packed(g.span * npad * ld, acc_t(0));
  for (size_t i = 0; i < w.size(); ++i) {
    const scalar_t* src = w[i].data_ptr<scalar_t>();
    const int64_t F = g.width_filters[i], k = g.width_kernel[i];
    for (int64_t f = 0; f < F; ++f)
      for (int64_t c = 0; c < g.channels; ++c)
        for (int64_t j = 0; j < k; ++j)
          packed[((g.width_first_tap[i] + j) * npad + g.width_col[i] + f) * ld + c] =
              static_cast<acc_t>(src[(f * g.channels + c) * k + (g.reverse ? k - 1 - j : j)]);
  }
  return packed;
}

std::vector<at::Tensor> contiguous_all(at::TensorList ts) {
  std::vector<at::Tensor> out;
  out.reserve(ts.size());
  for (const auto& t : ts) out.push_back(t.contiguous());
  return out;
}

// Sequence b's rows [L, T) of a (B, T, width) tensor are zero.
template <typename scalar_t>
void zero_padding(scalar_t* data, const int64_t* lengths, int64_t B, int64_t T, int64_t width) {
  if (!lengths) return;
  at::parallel_for(0, B, 1, [&](int64_t begin, int64_t end) {
    const FlushDenormalGuard flush;
    for (int64_t b = begin; b < end; ++b) {
      const int64_t L = std::min(std::max<int64_t>(lengths[b], 0), T);
      std::fill(data + (b * T + L) * width, data + (b + 1) * T * width, scalar_t(0));
    }
  });
}

at::Tensor multiwidth_conv1d_fwd_cpu(const at::Tensor& x_in, const std::optional<at::Tensor>& lengths_in,
                                     at::TensorList weights_in, const std::optional<at::Tensor>& bias_in,
                                     c10::string_view activation,
                                     bool causal, bool reverse, int64_t dilation) {
  const char* op = "sublocal::multiwidth_conv1d_fwd";
  const MwcGeometry g = mwc_geometry(x_in, weights_in, bias_in, activation, causal, reverse, dilation, op);
  const at::Tensor x = x_in.contiguous();
  const std::vector<at::Tensor> weights = contiguous_all(weights_in);
  const at::Tensor lengths = prepare_lengths(lengths_in, g.batch, x.device(), op);
  check_length_values(lengths, g.time, op);
  const bool has_bias = bias_in.has_value() && bias_in->defined();
  const at::Tensor bias = has_bias ? bias_in->contiguous() : at::Tensor();
  // Large outputs from the reusable-block cache (output_cache.h: no page faults in steady state;
  // 2x faster forward at B=8, T=30000, N=768 here).
  at::Tensor y = cpu_output({g.batch, g.time, g.filters}, x.options());
  const int64_t* L = lengths.defined() ? lengths.data_ptr<int64_t>() : nullptr;
  const std::vector<Item> items = make_items(g, L);
  const int64_t npad = round_up(std::max<int64_t>(g.filters, 1), kColAlign);
  const int64_t ldw = stream_ld(g.filters);
  const int64_t halo = (g.span - 1) * g.dilation;

  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "multiwidth_conv1d_fwd_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const MwcKernels<acc_t> kern = select_kernels<acc_t>();
    const std::vector<acc_t> wpack = pack_forward<scalar_t, acc_t>(g, weights, ldw);
    std::vector<acc_t> bpack(npad, acc_t(0));
    if (has_bias)
      for (int64_t n = 0; n < g.filters; ++n) bpack[n] = static_cast<acc_t>(bias.data_ptr<scalar_t>()[n]);
    const scalar_t* X = x.data_ptr<scalar_t>();
    scalar_t* Y = y.data_ptr<scalar_t>();
    zero_padding(Y, L, g.batch, g.time, g.filters);
    // float32/float64 results go straight into y; float16/bfloat16 through a float buffer.
    constexpr bool direct = std::is_same_v<scalar_t, acc_t>;
    at::parallel_for(0, static_cast<int64_t>(items.size()), 1, [&](int64_t begin, int64_t end) {
      const FlushDenormalGuard flush;
      at::AutoDispatchBelowADInplaceOrView below_autograd;  // activate_rows' ATen calls
      std::vector<acc_t> xbuf((kTile + halo + kPadRows) * g.channels + kPadRows);
      std::vector<acc_t> out(direct ? 0 : kTile * npad);
      MwcFwdTile<acc_t> p{xbuf.data(), wpack.data(), bpack.data(), g.tap_col_lo.data(), g.tap_col_hi.data(),
                          out.data(), 0, g.channels, npad, ldw, g.span, g.dilation, direct ? g.filters : npad,
                          g.filters, g.relu};
      for (int64_t it = begin; it < end; ++it) {
        const Item& item = items[it];
        const int64_t len = L ? L[item.b] : g.time;
        // Rows past the tile read as zero, so the register tiles' overrun rows are finite.
        load_rows(X, g.time, g.channels, g.channels, item.b, len, item.t0 - g.left * g.dilation,
                  item.rows + halo + kPadRows, xbuf.data());
        p.rows = item.rows;
        scalar_t* dst = Y + (item.b * g.time + item.t0) * g.filters;
        // (reinterpret_cast: the lambda is no template, so the branch not taken still compiles.)
        if constexpr (direct) p.out = reinterpret_cast<acc_t*>(dst);
        kern.fwd(p);
        // tanh / sigmoid on the tile while it is in cache (relu is in the micro-kernel).
        if (g.act == kActTanh || g.act == kActSigmoid)
          activate_rows(g.act, direct ? reinterpret_cast<acc_t*>(dst) : out.data(), item.rows, g.filters,
                        direct ? g.filters : npad);
        if constexpr (!direct) {
          for (int64_t r = 0; r < item.rows; ++r)
            for (int64_t n = 0; n < g.filters; ++n)
              dst[r * g.filters + n] = static_cast<scalar_t>(out[r * npad + n]);
        }
      }
    });
  });
  return y;
}

// Work split for the weight gradient: a fixed number of chunks of items (independent of the
// thread count, so the sum order is fixed), each with its own accumulator, bounded in memory.
int64_t weight_grad_chunks(int64_t n_items, int64_t acc_elems, int64_t elem_bytes) {
  const int64_t budget = int64_t(256) << 20;
  const int64_t by_memory = std::max<int64_t>(1, budget / std::max<int64_t>(1, acc_elems * elem_bytes));
  return std::max<int64_t>(1, std::min<int64_t>({n_items, int64_t(32), by_memory}));
}

std::tuple<at::Tensor, std::vector<at::Tensor>, at::Tensor> multiwidth_conv1d_bwd_cpu(
    const at::Tensor& grad_y_in, const at::Tensor& x_in, const std::optional<at::Tensor>& lengths_in,
    at::TensorList weights_in, const std::optional<at::Tensor>& y_in,
    c10::string_view activation, bool causal, bool reverse, int64_t dilation, bool need_grad_x,
    bool need_grad_weights) {
  const char* op = "sublocal::multiwidth_conv1d_bwd";
  const MwcGeometry g = mwc_geometry(x_in, weights_in, std::nullopt, activation, causal, reverse, dilation, op);
  check_like(grad_y_in, x_in, op, "grad_y", "x");
  check_shape(grad_y_in, {g.batch, g.time, g.filters}, op, "grad_y");
  const bool has_y = y_in.has_value() && y_in->defined();
  TORCH_CHECK(g.act == kActNone || has_y, op, ": `y` (the forward output) is required when activation is \"",
              std::string(activation), "\"");
  if (has_y) {
    check_like(*y_in, x_in, op, "y", "x");
    check_shape(*y_in, {g.batch, g.time, g.filters}, op, "y");
  }
  const at::Tensor x = x_in.contiguous();
  const at::Tensor grad_y = grad_y_in.contiguous();
  const at::Tensor y = g.act != kActNone ? y_in->contiguous() : at::Tensor();
  const std::vector<at::Tensor> weights = contiguous_all(weights_in);
  const at::Tensor lengths = prepare_lengths(lengths_in, g.batch, x.device(), op);
  check_length_values(lengths, g.time, op);
  const int64_t* L = lengths.defined() ? lengths.data_ptr<int64_t>() : nullptr;
  const std::vector<Item> items = make_items(g, L);
  const int64_t n_items = static_cast<int64_t>(items.size());
  const int64_t npad = round_up(std::max<int64_t>(g.filters, 1), kColAlign);
  const int64_t cpad = round_up(std::max<int64_t>(g.channels, 1), kColAlign);
  const int64_t ldw = stream_ld(g.filters), ldwb = stream_ld(g.channels), ldy = stream_ld(g.filters);
  const int64_t halo = (g.span - 1) * g.dilation;

  at::Tensor grad_x =
      need_grad_x ? cpu_output({g.batch, g.time, g.channels}, x.options()) : at::empty({0}, x.options());
  std::vector<at::Tensor> grad_w;
  at::Tensor grad_bias = need_grad_weights ? at::empty({g.filters}, x.options()) : at::empty({0}, x.options());
  if (need_grad_weights)
    for (const auto& w : weights) grad_w.push_back(at::empty(w.sizes(), w.options()));

  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "multiwidth_conv1d_bwd_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const MwcKernels<acc_t> kern = select_kernels<acc_t>();
    const scalar_t* X = x.data_ptr<scalar_t>();
    const scalar_t* DY = grad_y.data_ptr<scalar_t>();
    const scalar_t* Yv = g.act != kActNone ? y.data_ptr<scalar_t>() : nullptr;
    // The input gradient with channels as register rows and positions as vectors where C fills
    // the rows of a register tile better than the lanes of a vector (C=20: 20/24 against 20/32)
    // by enough to pay for transposing dy: per position the products cost about
    // N * C * taps / fill and the transpose about 40 * N, fitted to 1-thread timings here
    // (AVX-512): transposed 1.2x faster at `paper` (C=20, 9 taps per filter on average) and
    // 1.1x at C=5 with the same widths; 1.1x slower at C=41, at the notebook's widths 3 and 5,
    // and 1.5x slower at C=5, N=768, width 2 (the QRNN's first layer).
    int64_t tap_filters = 0;
    for (size_t i = 0; i < weights.size(); ++i) tap_filters += g.width_kernel[i] * g.width_filters[i];
    const double taps_per_filter = g.filters ? double(tap_filters) / double(g.filters) : 0.0;
    const double lane_fill = double(g.channels) / double(round_up(g.channels, kern.lanes));
    const double row_fill = double(g.channels) / double(round_up(g.channels, kern.rows));
    const char* forced = std::getenv("SUBLOCAL_MWC_DX");  // "normal" | "transposed": for the tests
    const bool transposed =
        need_grad_x && g.channels > 0 &&
        (forced && forced[0] ? std::string(forced) == "transposed"
                             : g.channels * taps_per_filter * (1 / lane_fill - 1 / row_fill) > 40.0);
    const std::vector<acc_t> wback = need_grad_x && !transposed
                                         ? pack_backward<scalar_t, acc_t>(g, weights, npad, ldwb)
                                         : std::vector<acc_t>();
    const std::vector<acc_t> wfwd = transposed ? pack_forward<scalar_t, acc_t>(g, weights, ldw)
                                               : std::vector<acc_t>();
    constexpr bool direct = std::is_same_v<scalar_t, acc_t>;
    scalar_t* DX = need_grad_x ? grad_x.data_ptr<scalar_t>() : nullptr;
    if (need_grad_x) zero_padding(DX, L, g.batch, g.time, g.channels);

    const int64_t acc_elems = g.span * g.channels * npad + npad;  // weight grads, then bias grads
    const int64_t n_chunks = need_grad_weights ? weight_grad_chunks(n_items, acc_elems, sizeof(acc_t)) : 1;
    std::vector<acc_t> acc(need_grad_weights ? n_chunks * acc_elems : 0, acc_t(0));

    // One item: dy * mask for the tile (plus the halo the input gradient needs), then the tile's
    // input gradient and its contribution to the weight and bias gradients.
    auto run_items = [&](int64_t begin, int64_t end, acc_t* grad_acc) {
      const int64_t dy_rows = kTile + (need_grad_x ? halo : 0) + kPadRows;
      std::vector<acc_t> dybuf(dy_rows * ldy);
      std::vector<acc_t> xbuf(need_grad_weights ? (kTile + halo + kPadRows) * g.channels + kPadRows : 0);
      // Transposed: dy^T with positions along rows of ldt (a whole number of register tiles
      // plus the halo), and the (channels x positions) result.
      const int64_t ldt = stream_ld(round_up(kTile, 64) + halo + kPadRows);
      std::vector<acc_t> dyt(transposed ? npad * ldt : 0);
      // (transposed: register tiles write whole tiles of kern.rows channels)
      std::vector<acc_t> out(transposed ? round_up(g.channels, kern.rows) * round_up(kTile, 64)
                                        : (need_grad_x && !direct ? kTile * cpad : 0));
      for (int64_t it = begin; it < end; ++it) {
        const Item& item = items[it];
        const int64_t len = L ? L[item.b] : g.time;
        // dy rows [first, first + count): zero outside [0, len), times (y > 0) under ReLU.
        const int64_t first = item.t0 - (need_grad_x ? g.right * g.dilation : 0);
        const int64_t count = item.rows + (need_grad_x ? halo : 0) + kPadRows;
        load_rows(DY, g.time, g.filters, ldy, item.b, len, first, count, dybuf.data());
        if (g.act != kActNone) {
          for (int64_t r = 0; r < count; ++r) {
            const int64_t s = first + r;
            if (s < 0 || s >= len) continue;
            const scalar_t* yrow = Yv + (item.b * g.time + s) * g.filters;
            acc_t* d = dybuf.data() + r * ldy;
            activation_backward(g.act, g.filters, yrow, d);
          }
        }
        scalar_t* dx_tile = need_grad_x ? DX + (item.b * g.time + item.t0) * g.channels : nullptr;
        if (transposed) {
          // Blocked transpose (16 x 16: whole cache lines both ways; element by element it cost
          // more than the product at N=768).
          const int64_t cols = std::min(count, ldt);
          for (int64_t r0 = 0; r0 < cols; r0 += 16) {
            const int64_t r1 = std::min(cols, r0 + 16);
            for (int64_t n0 = 0; n0 < g.filters; n0 += 16) {
              const int64_t n1 = std::min(g.filters, n0 + 16);
              for (int64_t n = n0; n < n1; ++n)
                for (int64_t r = r0; r < r1; ++r) dyt[n * ldt + r] = dybuf[r * ldy + n];
            }
          }
          for (int64_t n = 0; n < g.filters; ++n) std::fill(dyt.data() + n * ldt + cols, dyt.data() + (n + 1) * ldt, acc_t(0));
          const int64_t ldo = round_up(kTile, 64);
          MwcDxtTile<acc_t> p{dyt.data(), wfwd.data(), g.tap_col_lo.data(), g.tap_col_hi.data(), out.data(),
                              item.rows, g.channels, ldw, g.span, g.dilation, ldt, ldo};
          kern.dxt(p);
          for (int64_t r = 0; r < item.rows; ++r)
            for (int64_t c = 0; c < g.channels; ++c)
              dx_tile[r * g.channels + c] = static_cast<scalar_t>(out[c * ldo + r]);
        } else if (need_grad_x) {
          MwcDxTile<acc_t> p{dybuf.data(), wback.data(), g.tap_col_lo.data(), g.tap_col_hi.data(), out.data(),
                             item.rows, npad, ldy, cpad, ldwb, g.span, g.dilation, cpad, g.channels};
          if constexpr (direct) {
            p.out = reinterpret_cast<acc_t*>(dx_tile);
            p.ldo = g.channels;
          }
          kern.dx(p);
          if constexpr (!direct) {
            for (int64_t r = 0; r < item.rows; ++r)
              for (int64_t c = 0; c < g.channels; ++c)
                dx_tile[r * g.channels + c] = static_cast<scalar_t>(out[r * cpad + c]);
          }
        }
        if (need_grad_weights) {
          const acc_t* dy_tile = dybuf.data() + (need_grad_x ? g.right * g.dilation : 0) * ldy;
          load_rows(X, g.time, g.channels, g.channels, item.b, len, item.t0 - g.left * g.dilation,
                    item.rows + halo + kPadRows, xbuf.data());
          MwcDwTile<acc_t> p{xbuf.data(), dy_tile, g.tap_col_lo.data(), g.tap_col_hi.data(), grad_acc,
                             item.rows, g.channels, npad, ldy, g.span, g.dilation};
          kern.dw(p);
          acc_t* db = grad_acc + g.span * g.channels * npad;
          for (int64_t r = 0; r < item.rows; ++r)
            for (int64_t n = 0; n < npad; ++n) db[n] += dy_tile[r * ldy + n];
        }
      }
    };

    if (need_grad_weights) {
      at::parallel_for(0, n_chunks, 1, [&](int64_t begin, int64_t end) {
        const FlushDenormalGuard flush;
        for (int64_t c = begin; c < end; ++c)
          run_items(c * n_items / n_chunks, (c + 1) * n_items / n_chunks, acc.data() + c * acc_elems);
      });
      // Chunk sums in chunk order (deterministic), then unpacked into each width's layout.
      {
        const FlushDenormalGuard flush;  // serial arithmetic on the calling thread (fp_mode.h)
        for (int64_t c = 1; c < n_chunks; ++c) {
          const acc_t* src = acc.data() + c * acc_elems;
          for (int64_t e = 0; e < acc_elems; ++e) acc[e] += src[e];
        }
      }
      for (size_t i = 0; i < weights.size(); ++i) {
        scalar_t* dst = grad_w[i].data_ptr<scalar_t>();
        const int64_t F = g.width_filters[i], k = g.width_kernel[i];
        for (int64_t f = 0; f < F; ++f)
          for (int64_t c = 0; c < g.channels; ++c)
            for (int64_t j = 0; j < k; ++j)
              dst[(f * g.channels + c) * k + (g.reverse ? k - 1 - j : j)] = static_cast<scalar_t>(
                  acc[((g.width_first_tap[i] + j) * g.channels + c) * npad + g.width_col[i] + f]);
      }
      const acc_t* db = acc.data() + g.span * g.channels * npad;
      scalar_t* dbias = grad_bias.data_ptr<scalar_t>();
      for (int64_t n = 0; n < g.filters; ++n) dbias[n] = static_cast<scalar_t>(db[n]);
    } else if (need_grad_x) {
      at::parallel_for(0, n_items, 1, [&](int64_t begin, int64_t end) {
        const FlushDenormalGuard flush;
        run_items(begin, end, nullptr);
      });
    }
  });
  return {grad_x, grad_w, grad_bias};
}

}  // namespace

TORCH_LIBRARY_IMPL(sublocal, CPU, m) {
  m.impl("multiwidth_conv1d_fwd", &multiwidth_conv1d_fwd_cpu);
  m.impl("multiwidth_conv1d_bwd", &multiwidth_conv1d_bwd_cpu);
}

}  // namespace sublocal
