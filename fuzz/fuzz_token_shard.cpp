// Token shards (data/token_shards.h): header words, version, count against the
// file size.
#include "data/token_shards.h"
#include "fuzz/target.h"

namespace polaris::fuzz {

static void fuzz_token_shard(const uint8_t* data, size_t size) {
  MemoryFile file(data, size);
  read_token_shard(file.path());
}

POLARIS_FUZZ_TARGET("token_shard", fuzz_token_shard)

}  // namespace polaris::fuzz
