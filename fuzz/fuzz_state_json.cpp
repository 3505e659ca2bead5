// A checkpoint's state.json (checkpoint/checkpoint.h): bounded JSON, then the
// types and ranges of the run fields the loops restore.
#include "checkpoint/checkpoint.h"
#include "fuzz/target.h"

namespace polaris::fuzz {

static void fuzz_state_json(const uint8_t* data, size_t size) {
  MemoryFile file(data, size);
  read_checkpoint_state(file.path());
}

POLARIS_FUZZ_TARGET("state_json", fuzz_state_json)

}  // namespace polaris::fuzz
