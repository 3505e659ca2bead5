// RL (GRPO problems) JSONL (data/rl_dataset.h): strict, then with bad lines
// skipped; each problem's prompt is rendered and its reference handed to its
// verifier (the prompt as the response), as a GRPO step would.
#include "data/rl_dataset.h"
#include "data/verifier.h"
#include "fuzz/target.h"
#include "src/common/error.h"

namespace polaris::fuzz {

static void fuzz_rl_jsonl(const uint8_t* data, size_t size) {
  MemoryFile file(data, size);
  try {
    RlDataset::load(file.path());
  } catch (const Error&) {
  }
  const RlDataset dataset = RlDataset::load(file.path(), /*skip_bad=*/true);
  for (const RlExample& example : dataset.examples) {
    render_generation_prompt(fixture_tokenizer(), rl_prompt_messages(example, "Be brief."));
    verify(example.kind, example.prompt, example.reference);
  }
}

POLARIS_FUZZ_TARGET("rl_jsonl", fuzz_rl_jsonl)

}  // namespace polaris::fuzz
