// SFT JSONL (data/sft_dataset.h): strict, then with bad lines skipped; what
// loads is rendered with the chat format and tokenized (data/chat.h).
#include "data/sft_dataset.h"
#include "fuzz/target.h"
#include "src/common/error.h"

namespace polaris::fuzz {

static void fuzz_sft_jsonl(const uint8_t* data, size_t size) {
  MemoryFile file(data, size);
  try {
    SftDataset::load(file.path());
  } catch (const Error&) {
  }
  const SftDataset dataset = SftDataset::load(file.path(), /*skip_bad=*/true);
  tokenize_sft(fixture_tokenizer(), dataset);
}

POLARIS_FUZZ_TARGET("sft_jsonl", fuzz_sft_jsonl)

}  // namespace polaris::fuzz
