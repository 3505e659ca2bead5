// polaris_convert: move models between Hugging Face directories and model.bin.
//
//   usage() and kFlags below (polaris_convert --help)
//
// HF -> model.bin -> HF is bit-identical in fp32 (Conv1D weights are transposed
// on the way in and back on the way out). Bad input: one line, exit 1.
#include <cstdio>
#include <fstream>
#include <iterator>
#include <memory>

#include "checkpoint/checkpoint.h"
#include "data/tokenizer.h"
#include "model/hf_import.h"
#include "model/model_file.h"
#include "model/params.h"
#include "model/safetensors.h"
#include "src/common/cli.h"
#include "src/common/threads.h"

#include <sys/stat.h>

using namespace polaris;

namespace {

using T = FlagType;
// FlagSpec::scope: the conversions that read a flag.
enum Conversion : unsigned { kFromHf = 1, kFromCheckpoint = 2, kToHf = 4, kInfo = 8 };

// Each flag once (README.md's polaris_convert table lists the same ones).
const std::vector<FlagSpec> kFlags = {
    {"from-hf", T::text, "DIR", "", "a transformers directory (config.json + safetensors) to "
     "model.bin", kFromHf},
    {"from-checkpoint", T::text, "DIR[/step_N]", "",
     "a training checkpoint's weights and tokenizer record (DIR: its newest step) to model.bin",
     kFromCheckpoint},
    {"out", T::text, "MODEL.bin", "", "the model.bin to write", kFromHf | kFromCheckpoint},
    {"to-hf", T::text, "DIR", "", "MODEL.bin (the one argument) to a transformers directory",
     kToHf},
    {"tokenizer", T::text, "FILE", "",
     "with --to-hf: also the model's tokenizer (tokenizer.json and its companions)", kToHf},
    {"dtype", T::text, "fp32|bf16|fp16", "fp32", "the weights' type (fp16: --to-hf only)",
     kFromHf | kFromCheckpoint | kToHf},
    {"info", T::text, "MODEL.bin|DIR", "", "print the config and parameter count", kInfo},
};

std::string usage() {
  return "usage:\n"
         "  polaris_convert --from-hf DIR --out MODEL.bin [--dtype fp32|bf16]\n"
         "  polaris_convert --from-checkpoint DIR[/step_N] --out MODEL.bin [--dtype fp32|bf16]\n"
         "  polaris_convert MODEL.bin --to-hf DIR [--dtype fp32|bf16|fp16] [--tokenizer FILE]\n"
         "  polaris_convert --info MODEL.bin|DIR\n\n"
         "flags:\n" + describe_flags(kFlags);
}

std::string with_commas(size_t n) {
  std::string s = std::to_string(n), out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (i && (s.size() - i) % 3 == 0) out += ',';
    out += s[i];
  }
  return out;
}

void print_config(const std::string& source, const ModelConfig& c, const std::string& dtype) {
  std::printf("%s: %s\n", source.c_str(), c.describe().c_str());
  std::printf("family             %s\n", c.family_name().c_str());
  std::printf("vocab_size         %d\n", c.vocab_size);
  std::printf("hidden_size        %d\n", c.hidden_size);
  std::printf("num_layers         %d\n", c.num_layers);
  std::printf("num_heads          %d\n", c.num_heads);
  std::printf("num_kv_heads       %d\n", c.num_kv_heads);
  std::printf("head_dim           %d\n", c.head_dim);
  std::printf("intermediate_size  %d\n", c.intermediate_size);
  std::printf("max_positions      %d\n", c.max_positions);
  if (c.is_qwen3()) std::printf("rope_theta         %g\n", double(c.rope_theta));
  if (c.rope_scaling.is_yarn()) {
    const RopeScaling& s = c.rope_scaling;
    std::printf("rope_scaling       yarn factor=%g original_max_positions=%d beta_fast=%g "
                "beta_slow=%g attention_factor=%g truncate=%d\n",
                double(s.factor), s.original_max_positions, double(s.beta_fast),
                double(s.beta_slow), double(s.attention_factor), s.truncate ? 1 : 0);
    std::printf("context_limit      %d\n", c.context_limit());
  }
  std::printf("norm_eps           %g\n", double(c.norm_eps));
  std::printf("tied_embeddings    %s\n", c.tied_embeddings ? "true" : "false");
  std::printf("dtype              %s\n", dtype.c_str());
  std::printf("parameters         %s\n", with_commas(build_param_layout(c).total).c_str());
}

bool file_exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

bool is_directory(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

// The files transformers' AutoTokenizer reads besides tokenizer.json, copied
// verbatim when they sit beside --tokenizer.
const char* const kTokenizerCompanions[] = {"tokenizer_config.json", "special_tokens_map.json",
                                            "chat_template.jinja"};

// Every id the tokenizer produces must be one the model embeds; checked
// before anything is written.
Tokenizer checked_tokenizer(const std::string& path, const ModelConfig& config,
                            const std::string& model_path) {
  Tokenizer tokenizer = Tokenizer::load(path);
  require(tokenizer.vocab_size() <= config.vocab_size,
          "--tokenizer " + path + ": its ids run to " + std::to_string(tokenizer.vocab_size() - 1) +
              ", past the vocabulary of " + model_path + " (" + std::to_string(config.vocab_size) +
              " ids): not this model's tokenizer");
  return tokenizer;
}

void copy_file(const std::string& from, const std::string& to) {
  std::ifstream in(from, std::ios::binary);
  require(static_cast<bool>(in), from + ": cannot open");
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  require(!in.bad(), from + ": read failed");
  AtomicFile out(to);
  out.write(bytes.data(), bytes.size());
  out.commit();
}

// DIR/tokenizer.json and its companions, so DIR loads in transformers as it
// is. Without a tokenizer_config.json beside --tokenizer, a minimal one names
// the generic fast tokenizer, the context length and the end-of-text token.
void write_hf_tokenizer(const std::string& dir, const Tokenizer& tokenizer,
                        const ModelConfig& config) {
  const std::string source = tokenizer.path();
  const std::string source_dir = source.substr(0, source.find_last_of('/') + 1);
  copy_file(source, dir + "/tokenizer.json");
  bool has_config = false;
  for (const char* name : kTokenizerCompanions) {
    if (!file_exists(source_dir + name)) continue;
    copy_file(source_dir + name, dir + "/" + name);
    has_config = has_config || std::string(name) == "tokenizer_config.json";
  }
  if (has_config) return;
  nlohmann::json minimal = {{"tokenizer_class", "PreTrainedTokenizerFast"},
                            {"model_max_length", config.max_positions},
                            {"clean_up_tokenization_spaces", false}};
  if (!tokenizer.end_of_text_token().empty()) minimal["eos_token"] = tokenizer.end_of_text_token();
  const std::string text = minimal.dump(2) + "\n";
  AtomicFile out(dir + "/tokenizer_config.json");
  out.write(text.data(), text.size());
  out.commit();
}

}  // namespace

int main(int argc, char** argv) {
  polaris::configure_openmp(argv);  // first: before the OpenMP runtime reads its settings
  return run_main([&]() {
    if (wants_help(argc, argv)) {
      std::fputs(usage().c_str(), stdout);
      return 0;
    }
    const Flags flags(argc, argv, kFlags);
    const auto& pos = flags.positional();
    const int modes = int(flags.has("from-hf")) + int(flags.has("from-checkpoint")) +
                      int(flags.has("to-hf")) + int(flags.has("info"));
    require(modes == 1, std::string(modes == 0 ? "nothing to do"
                                               : "choose one of --from-hf, --from-checkpoint, "
                                                 "--to-hf, --info") +
                            " (usage: polaris_convert --help)");
    const unsigned conversion = flags.has("from-hf")           ? kFromHf
                                : flags.has("from-checkpoint") ? kFromCheckpoint
                                : flags.has("to-hf")           ? kToHf
                                                               : kInfo;
    const std::string mode = conversion == kFromHf           ? "--from-hf"
                             : conversion == kFromCheckpoint ? "--from-checkpoint"
                             : conversion == kToHf           ? "--to-hf"
                                                             : "--info";
    for (const FlagSpec& spec : kFlags)
      require(!flags.has(spec.name) || (spec.scope & conversion),
              std::string("flag --") + spec.name + " does not apply to " + mode);
    const std::string dtype = flags.text("dtype");

    if (flags.has("info")) {
      if (!pos.empty()) throw Error("unexpected argument '" + pos[0] + "' with --info");
      const std::string path = flags.text("info");
      if (is_directory(path)) {
        ModelConfig c = read_hf_config(path + "/config.json");
        print_config(path, c, "hf");
      } else {
        bool bf16 = false;
        TokenizerId tokenizer;
        ModelConfig c = read_model_bin_config(path, &bf16, &tokenizer);
        print_config(path, c, bf16 ? "bf16" : "fp32");
        std::printf("tokenizer: %s\n", tokenizer.describe().c_str());
      }
      return 0;
    }

    if (flags.has("from-hf") || flags.has("from-checkpoint")) {
      if (!pos.empty()) throw Error("unexpected argument '" + pos[0] + "' with " + mode);
      require(dtype == "fp32" || dtype == "bf16",
              "flag --dtype: model.bin stores fp32 or bf16, got '" + dtype + "'");
      const std::string out = flags.required_text("out");
      LoadedModel m;
      if (flags.has("from-hf")) {
        const std::string dir = flags.text("from-hf");
        m = read_hf_dir(dir);
        // The directory's tokenizer, recorded in model.bin so that training
        // can refuse token shards made with another (data/tokenizer_id.h).
        const std::string tokenizer = dir + "/tokenizer.json";
        if (file_exists(tokenizer)) {
          m.tokenizer = tokenizer_id(tokenizer, Tokenizer::load(tokenizer).vocab_size());
          std::printf("recorded %s: %s\n", tokenizer.c_str(), m.tokenizer.describe().c_str());
        }
      } else {
        // A run's directory (its newest checkpoint) or one step directory.
        std::string path = flags.text("from-checkpoint");
        if (!file_exists(path + "/model.h5")) {
          const std::string newest = latest_checkpoint(path);
          require(!newest.empty(), "--from-checkpoint " + path + ": no checkpoint in it");
          path = newest;
        }
        Checkpoint checkpoint = read_checkpoint(path);
        std::printf("%s: step %s\n", path.c_str(),
                    checkpoint.state.value("step", nlohmann::json()).dump().c_str());
        m.config = checkpoint.config;
        m.params = std::move(checkpoint.params);
        // The run's tokenizer, as --from-hf records the directory's.
        m.tokenizer = checkpoint.tokenizer;
        if (m.tokenizer.recorded()) std::printf("recorded %s\n", m.tokenizer.describe().c_str());
      }
      write_model_bin(out, m.config, m.params, dtype == "bf16", m.tokenizer);
      std::printf("wrote %s: %s, %s parameters (%s)\n", out.c_str(), m.config.describe().c_str(),
                  with_commas(m.params.size()).c_str(), dtype.c_str());
      return 0;
    }

    // --to-hf
    require(pos.size() == 1, "--to-hf needs exactly one MODEL.bin argument (polaris_convert --help)");
    FileDType dt;
    if (dtype == "fp32") dt = FileDType::F32;
    else if (dtype == "bf16") dt = FileDType::BF16;
    else if (dtype == "fp16") dt = FileDType::F16;
    else throw Error("flag --dtype wants fp32, bf16 or fp16, got '" + dtype + "'");
    const std::string dir = flags.text("to-hf");
    LoadedModel m = read_model_bin(pos[0]);
    std::unique_ptr<Tokenizer> tokenizer;
    if (flags.has("tokenizer"))
      tokenizer.reset(new Tokenizer(checked_tokenizer(flags.text("tokenizer"), m.config, pos[0])));
    write_hf_dir(dir, m.config, m.params, dt);
    if (tokenizer) write_hf_tokenizer(dir, *tokenizer, m.config);
    std::printf("wrote %s: %s, %s parameters (%s)%s\n", dir.c_str(), m.config.describe().c_str(),
                with_commas(m.params.size()).c_str(), dtype.c_str(),
                tokenizer ? (", with the tokenizer of " + tokenizer->path()).c_str() : "");
    return 0;
  });
}
