// A Hugging Face config.json (model/hf_import.h): the config import, then the
// parameter layout the config implies (sizes that must not overflow).
#include "fuzz/target.h"
#include "model/hf_import.h"
#include "model/params.h"

namespace polaris::fuzz {

static void fuzz_hf_config(const uint8_t* data, size_t size) {
  MemoryFile file(data, size);
  const ModelConfig config = read_hf_config(file.path());
  build_param_layout(config);
}

POLARIS_FUZZ_TARGET("hf_config", fuzz_hf_config)

}  // namespace polaris::fuzz
