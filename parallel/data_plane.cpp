#include "parallel/data_plane.h"

#include <stdexcept>
#include <string>

namespace nexus {

std::size_t dtype_bytes(DType t) {
  switch (t) {
    case DType::u8: return 1;
    case DType::i32: return 4;
    case DType::i64: return 8;
    case DType::f32: return 4;
    case DType::f64: return 8;
    case DType::bf16: return 2;
  }
  throw std::invalid_argument("unknown element type " + std::to_string(int(t)));
}

void wait_all(std::span<Request> requests) {
  for (Request& r : requests) r.wait();
}

}  // namespace nexus
