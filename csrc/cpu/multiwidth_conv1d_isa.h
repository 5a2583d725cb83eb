// Multi-width conv1d CPU micro-kernels for one instruction set.
//
// Included by multiwidth_conv1d.cpp once per instruction set, inside `namespace <isa> { }` and
// under the matching `#pragma GCC target`, with SUBLOCAL_VBYTES (vector bytes), SUBLOCAL_MR
// (rows per register tile) and SUBLOCAL_NV (vectors per register tile) defined. No include
// guard on purpose.
//
// Every product here is a small GEMM `acc[MR][NV vectors] += A (MR x K) * B (K x NV*VL)` whose
// accumulators stay in registers: A is read by scalar broadcasts with arbitrary strides (so the
// forward reads overlapping, shifted rows of the input buffer directly, with no im2col copy) and
// B is a packed weight or gradient matrix read as whole vectors. Per tap only the vectors of
// columns that some width using that tap feeds are computed (`vlo..vhi`): for widths
// 1,3,5,9,15,21 x 10 filters (4 AVX-512 vectors of columns) this is 48 vector FMAs per input
// channel and position instead of 84 for the zero-padded width-21 product (exact work: 34).

template <typename T>
struct VecOf;
template <>
struct VecOf<float> {
  typedef float type __attribute__((vector_size(SUBLOCAL_VBYTES)));
};
template <>
struct VecOf<double> {
  typedef double type __attribute__((vector_size(SUBLOCAL_VBYTES)));
};

constexpr int kMR = SUBLOCAL_MR;
constexpr int kNV = SUBLOCAL_NV;

// acc[m][LO..HI) += sum_k a[m*sam + k*sak] * b[k*ldb + v*VL ...]
template <typename T, int MR, int NV, int LO, int HI>
__attribute__((always_inline)) inline void mk_accumulate(typename VecOf<T>::type (&acc)[MR][NV],
                                                         const T* __restrict a, int64_t sam, int64_t sak,
                                                         const T* __restrict b, int64_t ldb, int64_t kn) {
  using V = typename VecOf<T>::type;
  constexpr int VL = sizeof(V) / sizeof(T);
  for (int64_t k = 0; k < kn; ++k) {
    V w[HI - LO];
#pragma GCC unroll 8
    for (int v = LO; v < HI; ++v) __builtin_memcpy(&w[v - LO], b + k * ldb + v * VL, sizeof(V));
#pragma GCC unroll 8
    for (int m = 0; m < MR; ++m) {
      // s - 0 folds to a plain broadcast (0 + s would not: -0 + 0 is +0).
      const V xa = a[m * sam + k * sak] - V{};
#pragma GCC unroll 8
      for (int v = LO; v < HI; ++v) acc[m][v] = acc[m][v] + xa * w[v - LO];
    }
  }
}

// Calls mk_accumulate<LO, HI> for the runtime range [lo, hi), 0 <= lo < hi <= NV.
template <typename T, int MR, int NV, int LO = 0, int HI = 1>
__attribute__((always_inline)) inline void mk_accumulate_range(int lo, int hi,
                                                               typename VecOf<T>::type (&acc)[MR][NV],
                                                               const T* a, int64_t sam, int64_t sak,
                                                               const T* b, int64_t ldb, int64_t kn) {
  if constexpr (LO < NV) {
    if constexpr (HI <= NV) {
      if (lo == LO && hi == HI) {
        mk_accumulate<T, MR, NV, LO, HI>(acc, a, sam, sak, b, ldb, kn);
        return;
      }
      mk_accumulate_range<T, MR, NV, LO, HI + 1>(lo, hi, acc, a, sam, sak, b, ldb, kn);
    } else {
      mk_accumulate_range<T, MR, NV, LO + 1, LO + 2>(lo, hi, acc, a, sam, sak, b, ldb, kn);
    }
  }
}

// The vectors [lo, hi) of a block of NV vectors starting at column n0 that hold columns of
// [col_lo, col_hi).
template <int VL>
inline void vector_range(int64_t col_lo, int64_t col_hi, int64_t n0, int nv, int& lo, int& hi) {
  lo = static_cast<int>(std::max<int64_t>(col_lo - n0, 0) / VL);
  hi = static_cast<int>(std::min<int64_t>(nv, (std::max<int64_t>(col_hi - n0, 0) + VL - 1) / VL));
}

// Columns [n0, n0 + NV*VL) of one output row, cut at ncols (the last vector may be partial).
template <typename T, int NV>
__attribute__((always_inline)) inline void store_row(T* dst, const typename VecOf<T>::type (&r)[NV], int64_t n0,
                                                     int64_t ncols) {
  using V = typename VecOf<T>::type;
  constexpr int VL = sizeof(V) / sizeof(T);
#pragma GCC unroll 8
  for (int v = 0; v < NV; ++v) {
    const int64_t col = n0 + v * VL;
    if (col + VL <= ncols) {
      __builtin_memcpy(dst + col, &r[v], sizeof(V));
    } else {
      for (int64_t i = 0; col + i < ncols; ++i) dst[col + i] = r[v][i];
    }
  }
}

// ---- forward: out rows = act(bias + sum_taps xbuf[r + tap*d] @ W[tap]) ----------------------
template <typename T, int MR, int NV>
void fwd_block(const MwcFwdTile<T>& p, int64_t r0, int64_t n0) {
  using V = typename VecOf<T>::type;
  constexpr int VL = sizeof(V) / sizeof(T);
  V acc[MR][NV];
#pragma GCC unroll 8
  for (int v = 0; v < NV; ++v) {
    V bv;
    __builtin_memcpy(&bv, p.bias + n0 + v * VL, sizeof(V));
#pragma GCC unroll 8
    for (int m = 0; m < MR; ++m) acc[m][v] = bv;
  }
  for (int64_t tap = 0; tap < p.span; ++tap) {
    int lo, hi;
    vector_range<VL>(p.col_lo[tap], p.col_hi[tap], n0, NV, lo, hi);
    if (lo >= hi) continue;
    mk_accumulate_range<T, MR, NV>(lo, hi, acc, p.xbuf + (r0 + tap * p.dilation) * p.channels, p.channels, 1,
                                   p.weight + tap * p.channels * p.ldw + n0, p.ldw, p.channels);
  }
  if (p.relu) {
#pragma GCC unroll 8
    for (int m = 0; m < MR; ++m)
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) acc[m][v] = acc[m][v] > V{} ? acc[m][v] : V{};
  }
  // Only the tile's valid rows and the output's columns are written (straight into y for
  // float32/float64: 1.25x at `paper` and 3x at `rna`-like N=768 forward, 1 thread, against
  // a staging buffer and a copy).
  const int64_t mr = std::min<int64_t>(MR, p.rows - r0);
#pragma GCC unroll 8
  for (int m = 0; m < MR; ++m)
    if (m < mr) store_row<T, NV>(p.out + (r0 + m) * p.ldo, acc[m], n0, p.ncols);
}

template <typename T>
void fwd_tile(const MwcFwdTile<T>& p) {
  constexpr int VL = sizeof(typename VecOf<T>::type) / sizeof(T);
  for (int64_t n0 = 0; n0 < p.npad; n0 += kNV * VL) {
    const int nv = static_cast<int>(std::min<int64_t>(kNV, (p.npad - n0) / VL));
    for (int64_t r0 = 0; r0 < p.rows; r0 += kMR) {
      switch (nv) {
#define SUBLOCAL_CASE(NVC) \
  case NVC:                \
    if constexpr (NVC <= kNV) fwd_block<T, kMR, NVC>(p, r0, n0); \
    break;
        SUBLOCAL_CASE(1)
        SUBLOCAL_CASE(2)
        SUBLOCAL_CASE(3)
        SUBLOCAL_CASE(4)
#undef SUBLOCAL_CASE
      }
    }
  }
}

// ---- backward data: out rows = sum_taps dy[r + (span-1-tap)*d, cols of tap] @ Wt[tap] ---------
template <typename T, int MR, int NV>
void dx_block(const MwcDxTile<T>& p, int64_t r0, int64_t c0) {
  using V = typename VecOf<T>::type;
  V acc[MR][NV];
#pragma GCC unroll 8
  for (int m = 0; m < MR; ++m)
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) acc[m][v] = V{};
  for (int64_t tap = 0; tap < p.span; ++tap) {
    const int64_t k0 = p.col_lo[tap], k1 = p.col_hi[tap];
    if (k0 >= k1) continue;
    mk_accumulate<T, MR, NV, 0, NV>(acc, p.dy + (r0 + (p.span - 1 - tap) * p.dilation) * p.ldy + k0, p.ldy, 1,
                                    p.weight + (tap * p.npad + k0) * p.ldw + c0, p.ldw, k1 - k0);
  }
  const int64_t mr = std::min<int64_t>(MR, p.rows - r0);
#pragma GCC unroll 8
  for (int m = 0; m < MR; ++m)
    if (m < mr) store_row<T, NV>(p.out + (r0 + m) * p.ldo, acc[m], c0, p.ncols);
}

template <typename T>
void dx_tile(const MwcDxTile<T>& p) {
  constexpr int VL = sizeof(typename VecOf<T>::type) / sizeof(T);
  for (int64_t c0 = 0; c0 < p.cpad; c0 += kNV * VL) {
    const int nv = static_cast<int>(std::min<int64_t>(kNV, (p.cpad - c0) / VL));
    for (int64_t r0 = 0; r0 < p.rows; r0 += kMR) {
      switch (nv) {
#define SUBLOCAL_CASE(NVC) \
  case NVC:                \
    if constexpr (NVC <= kNV) dx_block<T, kMR, NVC>(p, r0, c0); \
    break;
        SUBLOCAL_CASE(1)
        SUBLOCAL_CASE(2)
        SUBLOCAL_CASE(3)
        SUBLOCAL_CASE(4)
#undef SUBLOCAL_CASE
      }
    }
  }
}

// ---- backward data, transposed (for few channels): out (C x positions) -----------------------
// out[c][s] = sum_taps sum_{f of tap} W[tap][c][f] * dyT[f][s + (span-1-tap)*d]: channels are
// the register rows and positions the vectors, so C=5 fills 5 of 6 rows instead of 5 of 16
// lanes (6x faster for the input gradient at C=5, N=768, 1 thread).
template <typename T, int MR, int NV>
void dxt_block(const MwcDxtTile<T>& p, int64_t c0, int64_t s0) {
  using V = typename VecOf<T>::type;
  constexpr int VL = sizeof(V) / sizeof(T);
  V acc[MR][NV];
#pragma GCC unroll 8
  for (int m = 0; m < MR; ++m)
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) acc[m][v] = V{};
  for (int64_t tap = 0; tap < p.span; ++tap) {
    const int64_t k0 = p.col_lo[tap], k1 = p.col_hi[tap];
    if (k0 >= k1) continue;
    mk_accumulate<T, MR, NV, 0, NV>(acc, p.weight + (tap * p.channels + c0) * p.ldw + k0, p.ldw, 1,
                                    p.dyt + k0 * p.ldt + s0 + (p.span - 1 - tap) * p.dilation, p.ldt, k1 - k0);
  }
#pragma GCC unroll 8
  for (int m = 0; m < MR; ++m)
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) __builtin_memcpy(p.out + (c0 + m) * p.ldo + s0 + v * VL, &acc[m][v], sizeof(V));
}

template <typename T>
void dxt_tile(const MwcDxtTile<T>& p) {
  constexpr int VL = sizeof(typename VecOf<T>::type) / sizeof(T);
  for (int64_t s0 = 0; s0 < p.rows; s0 += kNV * VL) {
    const int nv = static_cast<int>(std::min<int64_t>(kNV, (p.rows - s0 + VL - 1) / VL));
    for (int64_t c0 = 0; c0 < p.channels; c0 += kMR) {
      switch (nv) {
#define SUBLOCAL_CASE(NVC) \
  case NVC:                \
    if constexpr (NVC <= kNV) dxt_block<T, kMR, NVC>(p, c0, s0); \
    break;
        SUBLOCAL_CASE(1)
        SUBLOCAL_CASE(2)
        SUBLOCAL_CASE(3)
        SUBLOCAL_CASE(4)
#undef SUBLOCAL_CASE
      }
    }
  }
}

// ---- backward weights: grad[tap][c][n] += sum_r xbuf[r + tap*d][c] * dy[r][n] -----------------
template <typename T, int MR, int NV>
void dw_block(const MwcDwTile<T>& p, int64_t tap, int64_t c0, int64_t n0) {
  using V = typename VecOf<T>::type;
  constexpr int VL = sizeof(V) / sizeof(T);
  int lo, hi;
  vector_range<VL>(p.col_lo[tap], p.col_hi[tap], n0, NV, lo, hi);
  if (lo >= hi) return;
  V acc[MR][NV];
#pragma GCC unroll 8
  for (int m = 0; m < MR; ++m)
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) acc[m][v] = V{};
  mk_accumulate_range<T, MR, NV>(lo, hi, acc, p.xbuf + tap * p.dilation * p.channels + c0, 1, p.channels,
                                 p.dy + n0, p.ldy, p.rows);
  const int64_t mr = std::min<int64_t>(MR, p.channels - c0);
  for (int64_t m = 0; m < mr; ++m) {
    T* g = p.grad + (tap * p.channels + c0 + m) * p.npad + n0;
    for (int v = lo; v < hi; ++v) {
      V cur;
      __builtin_memcpy(&cur, g + v * VL, sizeof(V));
      cur += acc[m][v];
      __builtin_memcpy(g + v * VL, &cur, sizeof(V));
    }
  }
}

template <typename T>
void dw_tile(const MwcDwTile<T>& p) {
  constexpr int VL = sizeof(typename VecOf<T>::type) / sizeof(T);
  for (int64_t tap = 0; tap < p.span; ++tap) {
    for (int64_t n0 = 0; n0 < p.npad; n0 += kNV * VL) {
      const int nv = static_cast<int>(std::min<int64_t>(kNV, (p.npad - n0) / VL));
      for (int64_t c0 = 0; c0 < p.channels; c0 += kMR) {
        switch (nv) {
#define SUBLOCAL_CASE(NVC) \
  case NVC:                \
    if constexpr (NVC <= kNV) dw_block<T, kMR, NVC>(p, tap, c0, n0); \
    break;
          SUBLOCAL_CASE(1)
          SUBLOCAL_CASE(2)
          SUBLOCAL_CASE(3)
          SUBLOCAL_CASE(4)
#undef SUBLOCAL_CASE
        }
      }
    }
  }
}

template <typename T>
MwcKernels<T> kernels() {
  return {&fwd_tile<T>, &dx_tile<T>, &dxt_tile<T>, &dw_tile<T>,
          static_cast<int64_t>(sizeof(typename VecOf<T>::type) / sizeof(T)), kMR};
}
