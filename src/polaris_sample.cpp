// polaris_sample: generate text (or token ids) from a model.bin.
// Usage: kFlags below (polaris_sample --help).
//
// Sampling (model/sampler.h): --temperature 0 is greedy; otherwise
// softmax(logits / T) cut by --top-k, --top-p and --min-p; --stop TEXT ends a
// completion once its text contains TEXT (needs --tokenizer). --samples N draws N
// completions of the prompt from independent streams of --seed.
#include <cstdio>
#include <sstream>

#include "data/chat.h"
#include "data/tokenizer.h"
#include "model/model_file.h"
#include "model/scheduler.h"
#include "src/common/backend.h"
#include "src/common/cli.h"
#include "src/common/sampling_flags.h"
#include "src/common/threads.h"

using namespace polaris;

namespace {

using T = FlagType;
// Each flag once (README.md's polaris_sample table lists the same ones).
const std::vector<FlagSpec> kFlags = join_flags({{
    {"prompt-ids", T::text, "1,2,3", "", "the prompt as token ids (no tokenizer needed)"},
    {"prompt", T::text, "TEXT", "", "the prompt as text (needs --tokenizer)"},
    {"tokenizer", T::text, "FILE", "", "tokenizer.json matching the model"},
    {"chat", T::toggle, "", "", "wrap --prompt as a ChatML user turn and stop at <|im_end|>"},
    {"temperature", T::number, "T", "1", "sampling temperature (0: greedy)"},
}, sampling_cut_flags(), {
    {"max-new-tokens", T::count, "N", "64", "tokens generated per completion"},
    {"samples", T::count, "N", "1", "completions of the prompt, each from its own stream"},
    {"seed", T::integer, "S", "0", "the random streams"},
    {"stop-id", T::integer, "ID", "", "also stop at this token id (end-of-text always stops)"},
    {"stop", T::text, "TEXT", "",
     "also stop once the text contains TEXT (needs --tokenizer; that token is printed last)"},
    {"print-ids", T::toggle, "", "", "print token ids, not text"},
    {"backend", T::text, "auto|cpu|cuda", "auto", "the ops"},
}, cuda_graphs_flags()});

std::string usage() {
  return "usage:\n"
         "  polaris_sample MODEL.bin --prompt-ids 1,2,3 [--print-ids] [flags]\n"
         "  polaris_sample MODEL.bin --tokenizer tokenizer.json --prompt TEXT [--chat] [flags]\n"
         "flags:\n" + describe_flags(kFlags);
}

std::vector<int32_t> parse_ids(const std::string& text) {
  std::vector<int32_t> ids;
  std::stringstream list(text);
  std::string item;
  while (std::getline(list, item, ',')) {
    try {
      size_t used = 0;
      long long id = std::stoll(item, &used);
      require(used == item.size() && id >= 0 && id < (1ll << 31), "");
      ids.push_back(int32_t(id));
    } catch (const std::exception&) {
      throw Error("--prompt-ids: '" + item + "' is not a token id (want e.g. 1,2,3)");
    }
  }
  require(!ids.empty(), "--prompt-ids is empty");
  require(text.back() != ',', "--prompt-ids '" + text + "' ends with a comma (want e.g. 1,2,3)");
  return ids;
}

int sample(const Flags& flags) {
  require(flags.positional().size() == 1,
          "give one MODEL.bin and --prompt-ids or --prompt (polaris_sample --help)");
  require(flags.has("prompt-ids") != flags.has("prompt"),
          "give exactly one of --prompt-ids and --prompt");
  require(!flags.has("prompt") || flags.has("tokenizer"), "--prompt needs --tokenizer");
  require(!flags.has("chat") || flags.has("prompt"), "--chat needs --prompt");
  LoadedModel loaded = read_model_bin(flags.positional()[0]);

  Tokenizer tokenizer;
  std::vector<int32_t> prompt;
  SamplingParams params;
  if (flags.has("tokenizer")) tokenizer = Tokenizer::load(flags.text("tokenizer"));
  if (flags.has("prompt-ids")) {
    prompt = parse_ids(flags.text("prompt-ids"));
  } else if (flags.has("chat")) {
    prompt = render_generation_prompt(tokenizer, {{"user", flags.text("prompt"), {}}});
    int32_t end = tokenizer.token_to_id("<|im_end|>");
    if (end >= 0) params.stop_tokens.push_back(end);
  } else {
    prompt = tokenizer.encode(flags.text("prompt"));
    require(!prompt.empty(), "--prompt is empty");
  }
  if (flags.has("tokenizer")) {
    const std::string end_text = tokenizer.end_of_text_token();
    const int32_t end = end_text.empty() ? -1 : tokenizer.token_to_id(end_text);
    if (end >= 0) params.stop_tokens.push_back(end);
  }
  // Ids beyond the model's vocabulary: ids typed for another model, or a
  // tokenizer that is not the model's.
  const std::string source = flags.has("prompt-ids")
                                 ? std::string("--prompt-ids")
                                 : "--prompt (tokenized by " + flags.text("tokenizer") + ")";
  for (int32_t id : prompt)
    require(id < loaded.config.vocab_size,
            source + ": token id " + std::to_string(id) + " is outside the vocabulary of " +
                flags.positional()[0] + " (" + std::to_string(loaded.config.vocab_size) +
                " ids)" + (flags.has("prompt") ? ": is the tokenizer this model's?" : ""));
  if (flags.has("stop-id")) {
    const long long stop = flags.integer("stop-id");
    require(stop >= 0 && stop < loaded.config.vocab_size,
            "--stop-id " + std::to_string(stop) + " is outside the model's vocabulary of " +
                std::to_string(loaded.config.vocab_size));
    params.stop_tokens.push_back(int32_t(stop));
  }

  params.temperature = float(flags.number("temperature"));
  const SamplingCuts cuts = read_sampling_cuts(flags);
  params.top_p = cuts.top_p;
  params.top_k = cuts.top_k;
  params.min_p = cuts.min_p;
  params.max_new_tokens = flags.count("max-new-tokens");
  const long long seed = flags.integer("seed");
  require(seed >= 0, "--seed must be >= 0");
  params.seed = uint64_t(seed);
  require(params.temperature >= 0, "--temperature must be >= 0 (0: greedy)");
  if (flags.has("stop")) {
    require(flags.has("tokenizer"), "--stop needs --tokenizer (to read the generated text)");
    const std::string stop = flags.text("stop");
    require(!stop.empty(), "--stop is empty");
    params.stop_strings.push_back(stop);
    // ids the tokenizer has no token for (a model's padded vocabulary) add no text
    params.token_bytes = [&tokenizer](int32_t id) {
      return id < tokenizer.vocab_size() && !tokenizer.id_to_token(id).empty()
                 ? tokenizer.token_bytes(id)
                 : std::string();
    };
  }
  // The last sampled token is never fed back, hence the - 1 (as in the sampler).
  require(prompt.size() + size_t(params.max_new_tokens) - 1 <= size_t(loaded.config.context_limit()),
          "--max-new-tokens " + std::to_string(params.max_new_tokens) + ": the prompt (" +
              std::to_string(prompt.size()) + " tokens) plus that many, less one, exceeds the "
              "model's " + std::to_string(loaded.config.context_limit()) + " positions");
  const int samples = flags.count("samples");
  require(samples <= 4096, "--samples must be in 1..4096");
  const DecodeMode decode_mode = parse_cuda_graphs(flags.text("cuda-graphs"));

  std::unique_ptr<Ops> ops = make_ops(flags.text("backend"));
  Transformer model(loaded.config, *ops);
  model.set_params(loaded.params);
  model.set_decode_mode(decode_mode);
  // The samples share the prompt's KV-cache blocks (computed once).
  std::vector<Completion> completions = generate_groups(model, {prompt}, int(samples), params);
  for (const Completion& c : completions) {
    if (flags.has("print-ids") || !flags.has("tokenizer")) {
      std::string line;
      for (size_t i = 0; i < c.tokens.size(); ++i)
        line += (i ? "," : "") + std::to_string(c.tokens[i]);
      std::printf("%s\n", line.c_str());
    } else {
      std::printf("%s\n", tokenizer.decode(c.tokens).c_str());
    }
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  polaris::configure_openmp(argv);  // first: before the OpenMP runtime reads its settings
  return run_main([&] {
    if (wants_help(argc, argv)) {
      std::fputs(usage().c_str(), stdout);
      return 0;
    }
    const Flags flags(argc, argv, kFlags);
    return sample(flags);
  });
}
