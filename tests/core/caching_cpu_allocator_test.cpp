#include "doppel/core/caching_cpu_allocator.hpp"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cstring>
#include <thread>
#include <vector>

namespace doppel {
namespace {

constexpr size_t kMiB = size_t{1} << 20;

TEST(CachingCpuAllocator, ReusesAFreedLargeBlockForTheSameOrASlightlySmallerSize) {
  CachingCpuAllocator allocator(int64_t{64} << 20);
  void* first = nullptr;
  {
    c10::DataPtr block = allocator.allocate(8 * kMiB);
    first = block.get();
    std::memset(first, 1, 8 * kMiB);  // usable over its whole size
  }
  EXPECT_EQ(allocator.statistics().cached_bytes, static_cast<int64_t>(8 * kMiB));
  {
    c10::DataPtr again = allocator.allocate(8 * kMiB - 4096);
    EXPECT_EQ(again.get(), first);
    EXPECT_EQ(allocator.statistics().cached_bytes, 0);
    EXPECT_EQ(allocator.statistics().live_bytes, static_cast<int64_t>(8 * kMiB));
  }
  // Much smaller, or larger: a new block, never a too-small or wasteful one.
  c10::DataPtr smaller = allocator.allocate(4 * kMiB);
  c10::DataPtr larger = allocator.allocate(9 * kMiB);
  const CpuMemoryCacheStatistics statistics = allocator.statistics();
  EXPECT_EQ(statistics.hits, 1);
  EXPECT_EQ(statistics.misses, 3);
  EXPECT_EQ(statistics.live_bytes, static_cast<int64_t>(13 * kMiB));
}

TEST(CachingCpuAllocator, CachedBlocksOfOtherSizesGiveWayToKeepTheFootprintNearThePeak) {
  CachingCpuAllocator allocator(int64_t{1} << 30);
  c10::DataPtr a = allocator.allocate(8 * kMiB);
  c10::DataPtr b = allocator.allocate(8 * kMiB);
  a.clear();
  b.clear();
  EXPECT_EQ(allocator.statistics().cached_bytes, static_cast<int64_t>(16 * kMiB));
  // Live 12 + cached 16 would exceed 1.25x the 16 MiB peak: one 8 MiB block goes.
  c10::DataPtr c = allocator.allocate(12 * kMiB);
  EXPECT_EQ(allocator.statistics().cached_bytes, static_cast<int64_t>(8 * kMiB));
}

TEST(CachingCpuAllocator, KeepsNoMoreThanItsLimitAndEvictsTheLeastRecentlyFreed) {
  CachingCpuAllocator allocator(int64_t{5} << 20);
  c10::DataPtr a = allocator.allocate(2 * kMiB);
  c10::DataPtr b = allocator.allocate(3 * kMiB);
  c10::DataPtr c = allocator.allocate(4 * kMiB);
  void* b_data = b.get();
  void* c_data = c.get();
  a.clear();
  b.clear();
  EXPECT_EQ(allocator.statistics().cached_bytes, static_cast<int64_t>(5 * kMiB));
  c.clear();  // 9 MiB freed: the 2 MiB and 3 MiB blocks (oldest) go back to the system
  EXPECT_EQ(allocator.statistics().cached_bytes, static_cast<int64_t>(4 * kMiB));
  c10::DataPtr reused = allocator.allocate(4 * kMiB);
  EXPECT_EQ(reused.get(), c_data);
  c10::DataPtr fresh = allocator.allocate(3 * kMiB);
  (void)b_data;  // may or may not be the same address: the system decides
  EXPECT_EQ(allocator.statistics().misses, 4);
  reused.clear();
  fresh.clear();
  allocator.release_cached();
  EXPECT_EQ(allocator.statistics().cached_bytes, 0);
  EXPECT_EQ(allocator.statistics().live_bytes, 0);
}

TEST(CachingCpuAllocator, SmallBlocksAndTheRawInterfaceWork) {
  CachingCpuAllocator allocator(int64_t{16} << 20);
  void* small = allocator.raw_allocate(100);
  void* large = allocator.raw_allocate(2 * kMiB);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(small) % 64, 0u);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(large) % 64, 0u);
  std::memset(small, 0, 100);
  allocator.raw_deallocate(small);
  allocator.raw_deallocate(large);
  EXPECT_EQ(allocator.statistics().cached_bytes, static_cast<int64_t>(2 * kMiB));
  c10::DataPtr empty = allocator.allocate(0);
  EXPECT_EQ(empty.get(), nullptr);
}

TEST(CachingCpuAllocator, IsSafeUnderConcurrentUse) {
  CachingCpuAllocator allocator(int64_t{32} << 20);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&allocator, t] {
      for (int i = 0; i < 200; ++i) {
        // Each size four times in a row, so a thread's own freed block serves it again.
        c10::DataPtr block = allocator.allocate((1 + (i / 4 + t) % 3) * kMiB);
        static_cast<char*>(block.get())[0] = static_cast<char>(i);
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(allocator.statistics().live_bytes, 0);
  EXPECT_GT(allocator.statistics().hits, 0);
}

TEST(CachingCpuAllocator, LibtorchTensorsGoThroughTheInstalledCache) {
  install_caching_cpu_allocator();
  release_cached_cpu_memory();
  const int64_t hits_before = cpu_memory_cache_statistics().hits;
  for (int i = 0; i < 3; ++i) {
    at::Tensor x = at::ones({1024, 1024});  // 4 MiB
    at::Tensor y = x * 2;
    EXPECT_EQ(y.sum().item<float>(), 2.0f * 1024 * 1024);
  }
  EXPECT_GE(cpu_memory_cache_statistics().hits - hits_before, 4);
  release_cached_cpu_memory();
  EXPECT_EQ(cpu_memory_cache_statistics().cached_bytes, 0);
}

}  // namespace
}  // namespace doppel
