#include <mutex>
#include <unordered_map>

#include "kernels/cuda/backend.h"
#include "kernels/cuda/check.cuh"
#include "kernels/cuda/scratch.cuh"

namespace nexus::cuda {

void* stream_scratch(const Exec& ex, Scratch purpose, std::size_t bytes) {
  struct Block {
    void* p = nullptr;
    std::size_t bytes = 0;
  };
  static std::mutex mutex;
  static std::unordered_map<void*, Block> per_stream[kScratchPurposes];  // [purpose] by cudaStream_t; process lifetime
  const std::lock_guard<std::mutex> lock(mutex);
  Block& b = per_stream[static_cast<int>(purpose)][ex.stream];
  if (b.bytes < bytes) {
    // The stream may still be reading the old block: let it finish before freeing it.
    NEXUS_CUDA_CHECK(cudaStreamSynchronize(stream_of(ex)));
    if (b.p) free_bytes(b.p);
    b.p = nullptr;
    b.p = allocate_bytes(bytes);
    b.bytes = bytes;
  }
  return b.p;
}

}  // namespace nexus::cuda
