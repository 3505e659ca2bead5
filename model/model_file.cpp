#include "model/model_file.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>

#include "model/params.h"
#include "model/safetensors.h"
#include "src/common/error.h"

namespace polaris {

namespace {

// Words [17, 24): the RoPE scaling (model_file.h).
constexpr int kRopeWordsBegin = 17, kRopeWordsEnd = 24;
static_assert(kRopeWordsEnd <= kModelBinTokenizerWord, "the RoPE words and the tokenizer record overlap");

void write_rope_words(int32_t* w, const RopeScaling& s) {
  if (!s.is_yarn()) return;  // all zero
  w[17] = int32_t(RopeType::Yarn);
  w[18] = int32_t(float_bits(s.factor));
  w[19] = s.original_max_positions;
  w[20] = int32_t(float_bits(s.beta_fast));
  w[21] = int32_t(float_bits(s.beta_slow));
  w[22] = int32_t(float_bits(s.attention_factor));
  w[23] = s.truncate ? 1 : 0;
}

RopeScaling read_rope_words(const int32_t* w, const std::string& path) {
  RopeScaling s;
  if (w[17] == 0) {
    for (int i = kRopeWordsBegin; i < kRopeWordsEnd; ++i)
      if (w[i] != 0)
        throw Error(path + ": header word " + std::to_string(i) + " is " + std::to_string(w[i]) +
                    " without RoPE scaling, expected 0 (corrupt or not a model.bin)");
    return s;
  }
  if (w[17] != int32_t(RopeType::Yarn))
    throw Error(path + ": unknown RoPE scaling type " + std::to_string(w[17]) +
                " in header word 17 (0 none, 1 yarn)");
  if (w[23] != 0 && w[23] != 1)
    throw Error(path + ": YaRN truncate flag must be 0 or 1, got " + std::to_string(w[23]));
  s.type = RopeType::Yarn;
  s.factor = bits_float(uint32_t(w[18]));
  s.original_max_positions = w[19];
  s.beta_fast = bits_float(uint32_t(w[20]));
  s.beta_slow = bits_float(uint32_t(w[21]));
  s.attention_factor = bits_float(uint32_t(w[22]));
  s.truncate = w[23] == 1;
  return s;  // its values are checked by ModelConfig::validate
}

struct Header {
  ModelConfig config;
  bool bf16 = false;
  uint64_t count = 0;
  uint64_t file_size = 0;
  int32_t version = 0;
  TokenizerId tokenizer;
};

// Opens `path` and reads and checks its header; leaves `f` at the parameters.
Header read_header(const std::string& path, FilePtr* f) {
  f->reset(std::fopen(path.c_str(), "rb"));
  if (!*f) throw Error(path + ": cannot open: " + errno_text());
  struct stat st;
  if (::fstat(fileno(f->get()), &st) != 0) throw Error(path + ": cannot stat: " + errno_text());
  if (S_ISDIR(st.st_mode)) throw Error(path + ": is a directory, expected a model.bin file");
  Header h;
  h.file_size = uint64_t(st.st_size);
  const uint64_t header_bytes = kModelBinHeaderWords * 4;
  int32_t w[kModelBinHeaderWords];
  if (h.file_size < header_bytes || std::fread(w, 4, kModelBinHeaderWords, f->get()) != size_t(kModelBinHeaderWords))
    throw Error(path + ": truncated: expected a " + std::to_string(header_bytes) +
                "-byte header, found " + std::to_string(h.file_size) + " bytes");
  if (w[0] != kModelBinMagic)
    throw Error(path + ": not a model.bin file (magic " + std::to_string(w[0]) + ", expected " +
                std::to_string(kModelBinMagic) + ")");
  h.version = w[1];
  if (w[1] != kModelBinVersion && w[1] != 1)
    throw Error(path + ": unsupported model.bin version " + std::to_string(w[1]) +
                " (this build reads version " + std::to_string(kModelBinVersion) + ")");
  if (w[3] != 0 && w[3] != 1)
    throw Error(path + ": unknown parameter dtype " + std::to_string(w[3]) + " (0 fp32, 1 bf16)");
  if (w[12] != 0 && w[12] != 1)
    throw Error(path + ": tied_embeddings flag must be 0 or 1, got " + std::to_string(w[12]));
  h.tokenizer = TokenizerId::from_words(w + kModelBinTokenizerWord, path);
  for (int i = kModelBinTokenizerWord + TokenizerId::kWords; i < kModelBinHeaderWords; ++i)
    if (w[i] != 0)
      throw Error(path + ": reserved header word " + std::to_string(i) + " is " +
                  std::to_string(w[i]) + ", expected 0 (corrupt or not a model.bin)");
  ModelConfig& c = h.config;
  c.family = Family(w[2]);
  c.vocab_size = w[4];
  c.hidden_size = w[5];
  c.num_layers = w[6];
  c.num_heads = w[7];
  c.num_kv_heads = w[8];
  c.head_dim = w[9];
  c.intermediate_size = w[10];
  c.max_positions = w[11];
  c.tied_embeddings = w[12] == 1;
  c.rope_theta = bits_float(uint32_t(w[13]));
  c.norm_eps = bits_float(uint32_t(w[14]));
  c.rope_scaling = read_rope_words(w, path);
  c.validate(path);  // bounded sizes: the layout below cannot overflow or take long
  h.bf16 = w[3] == 1;
  h.count = uint64_t(uint32_t(w[15])) | (uint64_t(uint32_t(w[16])) << 32);
  const uint64_t expected = build_param_layout(c).total;
  if (h.count != expected)
    throw Error(path + ": header says " + std::to_string(h.count) +
                " parameters but its config (" + c.describe() + ") has " +
                std::to_string(expected));
  const uint64_t bytes = h.count * (h.bf16 ? 2 : 4);
  const uint64_t found = h.file_size - kModelBinHeaderWords * 4;
  if (found < bytes)
    throw Error(path + ": truncated: expected " + std::to_string(bytes) +
                " bytes of parameters, found " + std::to_string(found));
  if (found > bytes)
    throw Error(path + ": " + std::to_string(found - bytes) + " trailing bytes after the " +
                std::to_string(bytes) + " bytes of parameters (config and weights disagree)");
  return h;
}

}  // namespace

void write_model_bin(const std::string& path, const ModelConfig& config,
                     const std::vector<float>& params, bool bf16, const TokenizerId& tokenizer) {
  config.validate(path);
  const size_t total = build_param_layout(config).total;
  require(params.size() == total, path + ": cannot write " + std::to_string(params.size()) +
                                      " parameters, the config's layout has " +
                                      std::to_string(total));
  int32_t w[kModelBinHeaderWords] = {};
  w[0] = kModelBinMagic;
  w[1] = kModelBinVersion;
  w[2] = int32_t(config.family);
  w[3] = bf16 ? 1 : 0;
  w[4] = config.vocab_size;
  w[5] = config.hidden_size;
  w[6] = config.num_layers;
  w[7] = config.num_heads;
  w[8] = config.num_kv_heads;
  w[9] = config.head_dim;
  w[10] = config.intermediate_size;
  w[11] = config.max_positions;
  w[12] = config.tied_embeddings ? 1 : 0;
  w[13] = int32_t(float_bits(config.rope_theta));
  w[14] = int32_t(float_bits(config.norm_eps));
  w[15] = int32_t(uint32_t(uint64_t(total) & 0xffffffffu));
  w[16] = int32_t(uint32_t(uint64_t(total) >> 32));
  tokenizer.to_words(w + kModelBinTokenizerWord);
  write_rope_words(w, config.rope_scaling);

  AtomicFile out(path);
  out.write(w, sizeof(w));
  if (!bf16) {
    out.write(params.data(), total * 4);
  } else {
    std::vector<uint16_t> buf(std::min<size_t>(total, size_t(1) << 22));
    for (size_t done = 0; done < total;) {
      const size_t n = std::min(buf.size(), total - done);
      for (size_t i = 0; i < n; ++i) buf[i] = float_to_bf16(params[done + i]);
      out.write(buf.data(), n * 2);
      done += n;
    }
  }
  out.commit();
}

ModelConfig read_model_bin_config(const std::string& path, bool* bf16, TokenizerId* tokenizer) {
  FilePtr f;
  Header h = read_header(path, &f);
  if (bf16) *bf16 = h.bf16;
  if (tokenizer) *tokenizer = h.tokenizer;
  return h.config;
}

LoadedModel read_model_bin(const std::string& path) {
  FilePtr f;
  Header h = read_header(path, &f);  // also checks the file's size against the header
  LoadedModel m;
  m.config = h.config;
  m.tokenizer = h.tokenizer;
  m.params.resize(h.count);
  const std::string short_read = path + ": truncated while reading the parameters";
  if (!h.bf16) {
    if (std::fread(m.params.data(), 4, h.count, f.get()) != h.count) throw Error(short_read);
  } else {
    std::vector<uint16_t> buf(std::min<size_t>(h.count, size_t(1) << 22));
    for (size_t done = 0; done < h.count;) {
      const size_t n = std::min<size_t>(buf.size(), h.count - done);
      if (std::fread(buf.data(), 2, n, f.get()) != n) throw Error(short_read);
      for (size_t i = 0; i < n; ++i) m.params[done + i] = bf16_to_float(buf[i]);
      done += n;
    }
  }
  const ParamLayout layout = build_param_layout(m.config);
  if (h.version == 1) reorder_from_v1_layout(m.config, layout, m.params);
  require_finite_params(layout, m.params, path);
  return m;
}

}  // namespace polaris
