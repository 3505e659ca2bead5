// model.bin (model/model_file.h): the header alone, then the whole file. Every
// count in the header must be checked against the file before it sizes an
// allocation.
#include "fuzz/target.h"
#include "model/model_file.h"

namespace polaris::fuzz {

static void fuzz_model_bin(const uint8_t* data, size_t size) {
  MemoryFile file(data, size);
  bool bf16 = false;
  read_model_bin_config(file.path(), &bf16);
  read_model_bin(file.path());
}

POLARIS_FUZZ_TARGET("model_bin", fuzz_model_bin)

}  // namespace polaris::fuzz
