// Large CPU outputs from a small cache of reusable, huge-page-advised blocks.
//
// Why: a fresh multi-megabyte CPU tensor is a fresh mmap, and the first write to each 4 KiB
// page costs a page fault. Measured here (2-core Xeon VM): 2.5 us per fault, so a 245 MB
// output (fo-pool at `rna`) spends 0.25 s in faults against 0.05 s of actual writing, which
// caps a memory-bound kernel at a fifth of the bandwidth floor. Blocks of at least
// kMinCachedBytes are 2 MiB-aligned and advised MADV_HUGEPAGE (half the first-touch cost),
// and when their tensor is freed they wait in the cache for the next output of the same
// rounded size instead of going back to the kernel: in a training loop, the steady state
// takes no faults at all.
//
// Bounded and switchable: SUBLOCAL_CPU_CACHE_MB (default 2048) caps the bytes held idle;
// 0 turns caching off (blocks are still huge-page-advised). The storage's allocator is this
// one, so the tensors are ordinary (resizable, shareable, serialisable).
// sublocal_kernels.cpu_cache_info() / empty_cpu_cache() report and release it.
#pragma once

#include <ATen/core/Tensor.h>

namespace sublocal {

// at::empty(sizes, options) for CPU tensors, served from the cache when large (and, like
// at::empty, filled with NaN when deterministic mode's fill_uninitialized_memory is on).
at::Tensor cpu_output(at::IntArrayRef sizes, const at::TensorOptions& options);

}  // namespace sublocal
