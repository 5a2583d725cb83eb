// See output_cache.h for why this exists.
#include "output_cache.h"

#include <ATen/Context.h>
#include <ATen/EmptyTensor.h>
#include <ATen/native/TensorFactories.h>
#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>
#include <torch/library.h>

#include <sys/mman.h>

#include <cstdlib>
#include <list>
#include <mutex>
#include <vector>

namespace sublocal {
namespace {

constexpr size_t kHugePage = size_t(2) << 20;
// SUBLOCAL_CPU_CACHE_MB when unset: off (see output_cache.h for the measurement behind it).
constexpr long long kDefaultCacheMb = 0;
constexpr size_t kMinCachedBytes = size_t(4) << 20;
// An idle block serves a request when it is at most this much larger (in quarters): length-
// bucketed batches ask for a slightly different size every step, and a block a quarter too big
// costs nothing but address space the request does not touch.
constexpr size_t kMaxSlackQuarters = 5;

struct Block {
  void* ptr;
  size_t bytes;
};

// Idle blocks, most recently released first. Requests take the smallest idle block that fits
// (best fit, within kMaxSlackQuarters / 4 of the request); a release that would exceed the
// cap evicts the least recently released blocks first. The list holds at most cap / 4 MiB
// blocks, so the linear scans cost nothing next to the multi-megabyte outputs they serve.
class OutputCache final : public c10::Allocator {
 public:
  OutputCache() {
    const char* env = std::getenv("SUBLOCAL_CPU_CACHE_MB");
    const long long mb = env ? std::atoll(env) : kDefaultCacheMb;
    limit_ = mb > 0 ? static_cast<size_t>(mb) << 20 : 0;
  }

  c10::DataPtr allocate(size_t n) override {
    if (n < kMinCachedBytes) return c10::GetDefaultCPUAllocator()->allocate(n);
    const size_t bytes = (n + kHugePage - 1) / kHugePage * kHugePage;
    Block* block = nullptr;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      auto best = idle_.end();
      for (auto it = idle_.begin(); it != idle_.end(); ++it) {
        const size_t b = (*it)->bytes;
        if (b >= bytes && b * 4 <= bytes * kMaxSlackQuarters && (best == idle_.end() || b < (*best)->bytes)) {
          best = it;
          if (b == bytes) break;
        }
      }
      if (best != idle_.end()) {
        block = *best;
        idle_.erase(best);
        idle_bytes_ -= block->bytes;
        ++hits_;
      } else {
        ++misses_;
      }
    }
    if (block == nullptr) {
      void* ptr = std::aligned_alloc(kHugePage, bytes);
      TORCH_CHECK(ptr != nullptr, "sublocal: out of memory allocating ", bytes, " bytes on the CPU");
#ifdef MADV_HUGEPAGE
      madvise(ptr, bytes, MADV_HUGEPAGE);  // advisory: ignored where transparent huge pages are off
#endif
      block = new Block{ptr, bytes};
    }
    return {block->ptr, block, &OutputCache::release, c10::Device(c10::DeviceType::CPU)};
  }

  void copy_data(void* dest, const void* src, std::size_t count) const override {
    default_copy_data(dest, src, count);
  }

  std::vector<int64_t> stats() {
    std::lock_guard<std::mutex> lock(mutex_);
    return {static_cast<int64_t>(idle_bytes_), static_cast<int64_t>(limit_), hits_, misses_, evictions_,
            static_cast<int64_t>(idle_.size())};
  }

  void empty() {
    std::vector<Block*> freed;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      freed.assign(idle_.begin(), idle_.end());
      idle_.clear();
      idle_bytes_ = 0;
    }
    for (Block* b : freed) destroy(b);
  }

  static OutputCache& get() {
    static OutputCache* cache = new OutputCache();  // never destroyed: tensors may outlive statics
    return *cache;
  }

 private:
  static void destroy(Block* block) {
    std::free(block->ptr);
    delete block;
  }

  static void release(void* ctx) {
    Block* block = static_cast<Block*>(ctx);
    OutputCache& cache = get();
    std::vector<Block*> evicted;
    {
      std::lock_guard<std::mutex> lock(cache.mutex_);
      if (block->bytes <= cache.limit_) {
        while (cache.idle_bytes_ + block->bytes > cache.limit_) {
          evicted.push_back(cache.idle_.back());
          cache.idle_bytes_ -= cache.idle_.back()->bytes;
          cache.idle_.pop_back();
          ++cache.evictions_;
        }
        cache.idle_.push_front(block);
        cache.idle_bytes_ += block->bytes;
        block = nullptr;
      }
    }
    for (Block* b : evicted) destroy(b);
    if (block != nullptr) destroy(block);
  }

  std::mutex mutex_;
  std::list<Block*> idle_;
  size_t idle_bytes_ = 0;
  size_t limit_ = 0;
  int64_t hits_ = 0, misses_ = 0, evictions_ = 0;
};

std::vector<int64_t> cpu_cache_info() { return OutputCache::get().stats(); }
void empty_cpu_cache() { OutputCache::get().empty(); }

}  // namespace

at::Tensor cpu_output(at::IntArrayRef sizes, const at::TensorOptions& options) {
  TORCH_INTERNAL_ASSERT(options.device().is_cpu());
  at::Tensor t = at::detail::empty_generic(sizes, &OutputCache::get(), c10::DispatchKeySet(c10::DispatchKey::CPU),
                                           c10::typeMetaToScalarType(options.dtype()), std::nullopt);
  // Poisoned (NaN) like at::empty when deterministic mode asks for it, so a test can see an
  // element a kernel forgot to write even when the block is a reused one.
  if (at::globalContext().deterministicAlgorithms() && at::globalContext().deterministicFillUninitializedMemory()) {
    at::native::fill_empty_deterministic_(t);
  }
  return t;
}

TORCH_LIBRARY_FRAGMENT(sublocal, m) {
  m.def("_cpu_cache_info() -> int[]", &cpu_cache_info);
  m.def("_cpu_cache_empty() -> ()", &empty_cpu_cache);
}

}  // namespace sublocal
