// The CPU backend: every op of the catalogue, with exactly its public signature, in namespace
// nexus::cpu. Each op's forward and backward live side by side in kernels/cpu/<op>.cpp, as
// templates instantiated for float (training) and double (finite-difference gradient checks).
#pragma once

#include <cstdint>

#include "kernels/shapes.h"

namespace nexus::cpu {
#include "kernels/op_declarations.inc"
}  // namespace nexus::cpu
