// tokenizer.json (data/tokenizer.h) and the tokenizer it describes. Input:
// the JSON, a NUL, then a text. The text is encoded and decoded; its bytes,
// read as little-endian int32 ids, are decoded too (ids from a hostile file
// must be refused with Error, never index out of a table). Refusing the
// random ids is expected; the input counts as accepted when the file loads.
#include <cstring>

#include "data/tokenizer.h"
#include "fuzz/target.h"
#include "src/common/error.h"

namespace polaris::fuzz {

static void fuzz_tokenizer_json(const uint8_t* data, size_t size) {
  const auto [json, text] = split_at_nul(data, size);
  MemoryFile file(json.data(), json.size());
  const Tokenizer tokenizer = Tokenizer::load(file.path());
  const std::vector<int32_t> ids = tokenizer.encode(text);
  for (int32_t id : ids)
    if (id < 0 || id >= tokenizer.vocab_size())
      throw FuzzFinding("encode gave id " + std::to_string(id) + " outside the vocabulary of " +
                        std::to_string(tokenizer.vocab_size()));
  tokenizer.decode(ids);
  std::vector<int32_t> raw_ids(text.size() / 4);
  std::memcpy(raw_ids.data(), text.data(), raw_ids.size() * 4);
  for (int32_t id : raw_ids) {
    tokenizer.id_to_token(id);
    tokenizer.is_added_token(id);
  }
  try {
    tokenizer.decode(raw_ids);
  } catch (const Error&) {
    // ids outside the vocabulary: refused, as they must be
  }
}

POLARIS_FUZZ_TARGET("tokenizer_json", fuzz_tokenizer_json)

}  // namespace polaris::fuzz
