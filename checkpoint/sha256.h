// SHA-256 (FIPS 180-4), streaming: the checksum in a checkpoint's manifest.json.
//
//   Sha256 h; h.update(data, n); ...; std::string hex = h.hex_digest();
//   sha256_file(path) hashes a file in 1 MiB chunks (Error naming it on failure).
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include <string>

namespace polaris {

class Sha256 {
 public:
  Sha256();
  void update(const void* data, size_t bytes);
  // The 32-byte digest; the object must not be updated afterwards.
  std::array<uint8_t, 32> digest();
  // The digest as 64 lowercase hex digits.
  std::string hex_digest();

 private:
  void block(const uint8_t* p);
  uint32_t h_[8];
  uint8_t buffer_[64];
  size_t buffered_ = 0;
  uint64_t length_ = 0;  // bytes hashed so far
};

// The hex SHA-256 of a string / of a file's bytes. *bytes (when given) gets the
// number of bytes read. Error "<path>: cannot open/read: ..." on failure.
std::string sha256_hex(const std::string& data);
std::string sha256_file(const std::string& path, uint64_t* bytes = nullptr);

}  // namespace polaris
