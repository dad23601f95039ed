#include "doppel/core/caching_cpu_allocator.hpp"

#include <c10/core/CPUAllocator.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>

namespace doppel {

namespace {

// 64 bytes keep the data at libtorch's alignment (c10::gAlignment).
constexpr size_t kHeaderBytes = 64;
// Large blocks are sized in 64 KiB steps and may serve a request up to a third
// smaller, so tensors of similar shapes share blocks (fewer blocks in all:
// measured, a lower peak RSS than exact fits, and no slower).
constexpr size_t kLargeGranule = size_t{64} << 10;
constexpr size_t kPage = 4096;

struct BlockHeader {
  const CachingCpuAllocator* owner;  // nullptr: a small block, freed at once
  size_t bytes;                      // usable bytes after the header
};
static_assert(sizeof(BlockHeader) <= kHeaderBytes);

BlockHeader* header_of(void* data) {
  return reinterpret_cast<BlockHeader*>(static_cast<char*>(data) - kHeaderBytes);
}

// Returns the data pointer of a fresh block with its header filled in, or nullptr.
void* system_allocate(size_t bytes, const CachingCpuAllocator* owner) {
  const bool large = owner != nullptr;
  void* base = nullptr;
  if (posix_memalign(&base, large ? kPage : kHeaderBytes, bytes + kHeaderBytes) != 0)
    return nullptr;
  auto* header = static_cast<BlockHeader*>(base);
  header->owner = owner;
  header->bytes = bytes;
  return static_cast<char*>(base) + kHeaderBytes;
}

void system_free(void* data) {
  std::free(header_of(data));
}

int64_t default_cache_limit() {
  const long pages = sysconf(_SC_PHYS_PAGES), page_size = sysconf(_SC_PAGE_SIZE);
  const int64_t physical = pages > 0 && page_size > 0 ? int64_t{pages} * page_size : 0;
  return physical / 2;
}

CachingCpuAllocator& process_allocator() {
  // Never destroyed: tensors freed during static destruction still find it.
  static auto* allocator = new CachingCpuAllocator(default_cache_limit());
  return *allocator;
}

}  // namespace

CachingCpuAllocator::CachingCpuAllocator(int64_t cache_limit_bytes)
    : cache_limit_(static_cast<size_t>(std::max<int64_t>(cache_limit_bytes, 0))) {}

CachingCpuAllocator::~CachingCpuAllocator() {
  release_cached();
}

c10::DataPtr CachingCpuAllocator::allocate(size_t bytes) const {
  const c10::Device cpu(c10::DeviceType::CPU);
  if (bytes == 0) return {nullptr, nullptr, &free_block, cpu};
  void* data = nullptr;
  if (bytes < kLargeBlockBytes) {
    data = system_allocate(bytes, nullptr);
  } else {
    const size_t rounded = (bytes + kLargeGranule - 1) / kLargeGranule * kLargeGranule;
    {
      std::lock_guard lock(mutex_);
      const auto found = freed_by_size_.lower_bound(rounded);
      if (found != freed_by_size_.end() && found->first <= rounded + rounded / 2) {
        const auto block = found->second;
        data = block->data;
        statistics_.cached_bytes -= static_cast<int64_t>(block->bytes);
        statistics_.live_bytes += static_cast<int64_t>(block->bytes);
        ++statistics_.hits;
        freed_by_size_.erase(found);
        freed_.erase(block);
        return {data, data, &free_block, cpu};
      }
      ++statistics_.misses;
      // Keep the footprint (live + cached) within 1.25x the highest live total
      // seen: cached blocks of shapes no longer asked for (the UNet's, once the
      // VAE decodes) give way to new ones instead of adding to the peak RSS.
      const size_t live = static_cast<size_t>(statistics_.live_bytes) + rounded;
      peak_live_bytes_ = std::max(peak_live_bytes_, live);
      const size_t footprint_limit = peak_live_bytes_ + peak_live_bytes_ / 4;
      evict_until(std::min(cache_limit_, footprint_limit - live));
    }
    data = system_allocate(rounded, this);
    if (data == nullptr) {  // the cache may hold what the system lacks
      release_cached();
      data = system_allocate(rounded, this);
    }
    if (data != nullptr) {
      std::lock_guard lock(mutex_);
      statistics_.live_bytes += static_cast<int64_t>(rounded);
    }
  }
  TORCH_CHECK(data != nullptr, "not enough memory: could not allocate ", bytes,
              " bytes of CPU memory");
  return {data, data, &free_block, cpu};
}

c10::DeleterFnPtr CachingCpuAllocator::raw_deleter() const {
  return &free_block;
}

void CachingCpuAllocator::free_block(void* data) {
  if (data == nullptr) return;
  const BlockHeader* header = header_of(data);
  if (header->owner == nullptr) {
    system_free(data);
  } else {
    header->owner->release(data, header->bytes);
  }
}

void CachingCpuAllocator::release(void* data, size_t bytes) const {
  std::lock_guard lock(mutex_);
  statistics_.live_bytes -= static_cast<int64_t>(bytes);
  statistics_.cached_bytes += static_cast<int64_t>(bytes);
  freed_by_size_.emplace(bytes, freed_.insert(freed_.end(), CachedBlock{data, bytes}));
  evict_until(cache_limit_);
}

void CachingCpuAllocator::evict_until(size_t cached_limit) const {
  while (static_cast<size_t>(statistics_.cached_bytes) > cached_limit && !freed_.empty()) {
    const auto oldest = freed_.begin();
    auto [first, last] = freed_by_size_.equal_range(oldest->bytes);
    while (first != last && first->second != oldest) ++first;
    freed_by_size_.erase(first);
    statistics_.cached_bytes -= static_cast<int64_t>(oldest->bytes);
    system_free(oldest->data);
    freed_.erase(oldest);
  }
}

void CachingCpuAllocator::release_cached() const {
  std::lock_guard lock(mutex_);
  evict_until(0);
}

CpuMemoryCacheStatistics CachingCpuAllocator::statistics() const {
  std::lock_guard lock(mutex_);
  return statistics_;
}

void install_caching_cpu_allocator() {
  static std::once_flag installed;
  std::call_once(installed, [] { c10::SetCPUAllocator(&process_allocator(), /*priority=*/1); });
}

void release_cached_cpu_memory() {
  process_allocator().release_cached();
}

CpuMemoryCacheStatistics cpu_memory_cache_statistics() {
  return process_allocator().statistics();
}

}  // namespace doppel
