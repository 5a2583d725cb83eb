// Large CPU outputs from huge-page-advised blocks, optionally kept for reuse (opt-in).
//
// Why: a fresh multi-megabyte CPU tensor is a fresh mmap, and the first write to each 4 KiB
// page costs a page fault. Measured on a 2-core Xeon VM: 2.5 us per fault, so a 245 MB output
// (fo-pool at `rna`) spends 0.25 s in faults against 0.05 s of writing. Blocks of at least
// kMinCachedBytes are 2 MiB-aligned and advised MADV_HUGEPAGE (half the first-touch cost).
//
// With SUBLOCAL_CPU_CACHE_MB=N (N > 0), freed blocks wait for reuse, at most N MiB of them:
// a request takes the smallest idle block that fits and is at most a quarter larger (best
// fit), and a release that would pass the cap frees the least recently released blocks (LRU).
// That removes the faults when the same shapes come back (a fixed-shape benchmark loop). It is
// off by default because a training loop on length-bucketed batches did not gain from it:
// benchmarks/output_cache_loop.py (A-LSTM, paper sizes, batch 32, log-normal lengths with
// median 450; 2-core VM shared with other jobs, best of 2 processes each) measured a median
// step of 3.09 s with a 2048 MiB cap against 3.14 s without, and a peak RSS of 2736 MB against
// 1365 MB. The storage's allocator is this one, so the tensors are ordinary (resizable,
// shareable, serialisable). sublocal_kernels.cpu_cache_info() / empty_cpu_cache() report and
// release the idle blocks.
#pragma once

#include <ATen/core/Tensor.h>

namespace sublocal {

// at::empty(sizes, options) for CPU tensors, served from the cache when large (and, like
// at::empty, filled with NaN when deterministic mode's fill_uninitialized_memory is on).
at::Tensor cpu_output(at::IntArrayRef sizes, const at::TensorOptions& options);

}  // namespace sublocal
