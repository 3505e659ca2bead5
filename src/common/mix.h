// mix64: splitmix64's finaliser, a strong 64-bit mixing function.
//
// The engine's random streams are counter-based: a draw is mix64 of (seed,
// stream, counter), so it needs no state carried between calls and does not
// depend on what else runs in the same batch or on another rank.
#pragma once
#include <cstdint>

#include "src/common/host_device.h"

namespace polaris {

// Host and device (the GPU sampler draws the same numbers, cuda/sampling.cu).
POLARIS_HOST_DEVICE inline uint64_t mix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

}  // namespace polaris
