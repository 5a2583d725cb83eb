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
#include <map>
#include <mutex>
#include <vector>

namespace sublocal {
namespace {

constexpr size_t kHugePage = size_t(2) << 20;
constexpr size_t kMinCachedBytes = size_t(4) << 20;

struct Block {
  void* ptr;
  size_t bytes;
};

class OutputCache final : public c10::Allocator {
 public:
  OutputCache() {
    const char* env = std::getenv("SUBLOCAL_CPU_CACHE_MB");
    const long long mb = env ? std::atoll(env) : 2048;
    limit_ = mb > 0 ? static_cast<size_t>(mb) << 20 : 0;
  }

  c10::DataPtr allocate(size_t n) override {
    if (n < kMinCachedBytes) return c10::GetDefaultCPUAllocator()->allocate(n);
    const size_t bytes = (n + kHugePage - 1) / kHugePage * kHugePage;
    Block* block = nullptr;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      auto it = free_.find(bytes);
      if (it != free_.end() && !it->second.empty()) {
        block = it->second.back();
        it->second.pop_back();
        idle_bytes_ -= bytes;
        ++hits_;
      }
    }
    if (block == nullptr) {
      void* ptr = std::aligned_alloc(kHugePage, bytes);
      TORCH_CHECK(ptr != nullptr, "sublocal: out of memory allocating ", bytes, " bytes on the CPU");
#ifdef MADV_HUGEPAGE
      madvise(ptr, bytes, MADV_HUGEPAGE);  // advisory: ignored where transparent huge pages are off
#endif
      block = new Block{ptr, bytes};
      std::lock_guard<std::mutex> lock(mutex_);
      ++misses_;
    }
    return {block->ptr, block, &OutputCache::release, c10::Device(c10::DeviceType::CPU)};
  }

  void copy_data(void* dest, const void* src, std::size_t count) const override {
    default_copy_data(dest, src, count);
  }

  std::vector<int64_t> stats() {
    std::lock_guard<std::mutex> lock(mutex_);
    return {static_cast<int64_t>(idle_bytes_), static_cast<int64_t>(limit_), hits_, misses_};
  }

  void empty() {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto& kv : free_) {
      for (Block* b : kv.second) {
        std::free(b->ptr);
        delete b;
      }
    }
    free_.clear();
    idle_bytes_ = 0;
  }

  static OutputCache& get() {
    static OutputCache* cache = new OutputCache();  // never destroyed: tensors may outlive statics
    return *cache;
  }

 private:
  static void release(void* ctx) {
    Block* block = static_cast<Block*>(ctx);
    OutputCache& cache = get();
    {
      std::lock_guard<std::mutex> lock(cache.mutex_);
      if (cache.idle_bytes_ + block->bytes <= cache.limit_) {
        cache.free_[block->bytes].push_back(block);
        cache.idle_bytes_ += block->bytes;
        return;
      }
    }
    std::free(block->ptr);
    delete block;
  }

  std::mutex mutex_;
  std::map<size_t, std::vector<Block*>> free_;
  size_t idle_bytes_ = 0;
  size_t limit_ = 0;
  int64_t hits_ = 0, misses_ = 0;
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
