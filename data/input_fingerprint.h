// A fingerprint of a run's input (a file pattern, a file, or a plain value
// such as a preset name), so that data-parallel ranks can check at start
// that they were given the same model, tokenizer and data (ranks on
// different machines may hold the same files under different paths, so
// contents are compared, never paths).
//
//   input_fingerprint(p) = the first 8 bytes of SHA-256 over, for each
//   regular file matching the glob(3) pattern p in sorted order: its size,
//   then its bytes (all of them up to 64 MiB; beyond, 256 evenly spaced
//   64 KiB blocks, the first and last included). When nothing matches, the
//   pattern's text.
//
// Sampling keeps the check to a few seconds for multi-gigabyte files: it
// tells different files apart, not one flipped byte deep inside a large one
// (checkpoint manifests, checkpoint/sha256.h, cover integrity).
#pragma once
#include <cstdint>
#include <string>

namespace polaris {

// Error naming the file when a matching file cannot be read.
uint64_t input_fingerprint(const std::string& pattern);

}  // namespace polaris
