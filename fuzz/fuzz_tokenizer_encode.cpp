// Encoding arbitrary bytes with the real Qwen3 tokenizer (data/tokenizer.h):
// invalid UTF-8, added tokens, normalization, the pre-tokenizer regex and BPE.
// Every id must lie in the vocabulary and decode without an error.
#include "data/tokenizer.h"
#include "fuzz/target.h"
#include "src/common/error.h"

namespace polaris::fuzz {

static void fuzz_tokenizer_encode(const uint8_t* data, size_t size) {
  const Tokenizer& tokenizer = fixture_tokenizer();
  const std::string text(reinterpret_cast<const char*>(data), size);
  const std::vector<int32_t> ids = tokenizer.encode(text);
  try {
    const std::string decoded = tokenizer.decode(ids);
    if (text == Tokenizer::sanitize_utf8(text) && decoded.empty() != text.empty())
      throw FuzzFinding("encode/decode lost the whole text");
  } catch (const Error& e) {
    throw FuzzFinding(std::string("decoding encode's own ids failed: ") + e.what());
  }
}

POLARIS_FUZZ_TARGET("tokenizer_encode", fuzz_tokenizer_encode)

}  // namespace polaris::fuzz
