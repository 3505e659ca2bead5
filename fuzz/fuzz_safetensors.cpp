// .safetensors (model/safetensors.h): open (header JSON, shapes, offsets), then
// read every tensor the way the importers do.
#include "fuzz/target.h"
#include "model/safetensors.h"

namespace polaris::fuzz {

static void fuzz_safetensors(const uint8_t* data, size_t size) {
  MemoryFile file(data, size);
  SafetensorsFile tensors(file.path());
  for (const std::string& name : tensors.names()) {
    const SafetensorsEntry& entry = tensors.entry(name);
    if (is_float_dtype(entry.dtype))
      tensors.read_f32(name);
    else
      tensors.read_i64(name);
    tensors.read_raw(name);
  }
}

POLARIS_FUZZ_TARGET("safetensors", fuzz_safetensors)

}  // namespace polaris::fuzz
