// polaris_tokenize: text <-> token ids, and text corpora -> token shard files.
//
//   polaris_tokenize encode --tokenizer PATH [--jsonl-key text] [--skip-bad]
//       stdin: JSONL {"text": "..."}      stdout: {"ids": [...]} per line
//   polaris_tokenize decode --tokenizer PATH [--skip-bad]
//       stdin: JSONL {"ids": [...]}       stdout: {"text": "..."} per line
//   polaris_tokenize shards --tokenizer PATH --out PREFIX [--val-fraction 0.01]
//       [--shard-tokens 100000000] [--jsonl-key text] [--skip-bad] [--threads N] FILES...
//       Each line of a .jsonl file is a document (its "text" field); any other
//       file is one document. Writes PREFIX_train_000000.bin, ... and
//       PREFIX_val_000000.bin, ... (format: data/token_shards.h), with the
//       tokenizer's end-of-text token after every document.
//
// Blank input lines are skipped. A malformed line is an error "FILE:LINE: problem";
// with --skip-bad it is skipped and counted instead. Validation documents are
// spread evenly through the corpus (every k-th document), so the split does not
// depend on how the corpus happens to be ordered into files.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "data/token_shards.h"
#include "data/tokenizer.h"
#include "src/common/cli.h"

using namespace polaris;
using json = nlohmann::json;

namespace {

using Clock = std::chrono::steady_clock;

bool is_blank(const std::string& line) {
  return std::all_of(line.begin(), line.end(), [](char c) { return std::isspace(static_cast<unsigned char>(c)); });
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Reads the document out of one JSONL line; "" in *problem when fine.
std::string text_of_line(const std::string& line, const std::string& key, std::string* problem) {
  json record = json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (record.is_discarded()) { *problem = "malformed JSON"; return ""; }
  if (!record.is_object() || !record.contains(key) || !record[key].is_string()) {
    *problem = "no string field \"" + key + "\"";
    return "";
  }
  problem->clear();
  return record[key].get<std::string>();
}

std::string dump_json(const json& j) {
  // Text from decode is valid UTF-8 already; replace just guards the writer.
  return j.dump(-1, ' ', /*ensure_ascii=*/false, json::error_handler_t::replace);
}

// --- encode / decode: JSONL filters on stdin/stdout ------------------------

int run_encode(const Tokenizer& tokenizer, const std::string& key, bool skip_bad, int threads) {
  std::string line;
  size_t line_number = 0, skipped = 0;
  std::vector<std::string> batch;
  auto flush = [&]() {
    for (const auto& ids : tokenizer.encode_batch(batch, threads)) std::cout << dump_json({{"ids", ids}}) << '\n';
    batch.clear();
  };
  while (std::getline(std::cin, line)) {
    ++line_number;
    if (is_blank(line)) continue;
    std::string problem;
    std::string text = text_of_line(line, key, &problem);
    if (!problem.empty()) {
      if (!skip_bad) throw Error("<stdin>:" + std::to_string(line_number) + ": " + problem);
      ++skipped;
      continue;
    }
    batch.push_back(std::move(text));
    if (batch.size() >= 4096) flush();
  }
  flush();
  if (skipped) std::fprintf(stderr, "skipped %zu bad lines\n", skipped);
  return 0;
}

int run_decode(const Tokenizer& tokenizer, bool skip_bad) {
  std::string line;
  size_t line_number = 0, skipped = 0;
  while (std::getline(std::cin, line)) {
    ++line_number;
    if (is_blank(line)) continue;
    std::string where = "<stdin>:" + std::to_string(line_number) + ": ";
    std::string problem;
    std::vector<int32_t> ids;
    json record = json::parse(line, nullptr, false);
    if (record.is_discarded()) {
      problem = "malformed JSON";
    } else if (!record.is_object() || !record.contains("ids") || !record["ids"].is_array()) {
      problem = "no array field \"ids\"";
    } else {
      for (const json& id : record["ids"]) {
        if (!id.is_number_integer()) { problem = "\"ids\" holds a non-integer " + id.dump(); break; }
        long long value = id.get<long long>();
        if (value < 0 || value >= tokenizer.vocab_size()) {
          problem = "token id " + std::to_string(value) + " is outside the vocabulary (size " +
                    std::to_string(tokenizer.vocab_size()) + ")";
          break;
        }
        ids.push_back(static_cast<int32_t>(value));
      }
    }
    std::string text;
    if (problem.empty()) {
      try {
        text = tokenizer.decode(ids);
      } catch (const Error& e) {
        problem = e.what();
      }
    }
    if (!problem.empty()) {
      if (!skip_bad) throw Error(where + problem);
      ++skipped;
      continue;
    }
    std::cout << dump_json({{"text", text}}) << '\n';
  }
  if (skipped) std::fprintf(stderr, "skipped %zu bad lines\n", skipped);
  return 0;
}

// --- shards ----------------------------------------------------------------

// Collects one split's tokens and writes PREFIX_<split>_NNNNNN.bin files of
// shard_tokens tokens each (the last one shorter).
class ShardWriter {
 public:
  ShardWriter(std::string prefix, std::string split, size_t shard_tokens, int vocab_size,
              std::vector<std::string>* written)
      : prefix_(std::move(prefix)), split_(std::move(split)), shard_tokens_(shard_tokens),
        vocab_size_(vocab_size), written_(written) {}

  void append(const std::vector<int32_t>& ids) {
    for (int32_t id : ids) {
      buffer_.push_back(static_cast<uint32_t>(id));
      if (buffer_.size() == shard_tokens_) flush();
    }
  }
  void finish() {
    if (!buffer_.empty()) flush();
  }
  size_t tokens() const { return total_; }
  int shards() const { return index_; }

 private:
  void flush() {
    char name[32];
    std::snprintf(name, sizeof(name), "_%06d.bin", index_++);
    std::string path = prefix_ + "_" + split_ + name;
    write_token_shard(path, buffer_, vocab_size_);
    written_->push_back(path);
    total_ += buffer_.size();
    buffer_.clear();
  }
  std::string prefix_, split_;
  size_t shard_tokens_;
  int vocab_size_;
  std::vector<std::string>* written_;
  std::vector<uint32_t> buffer_;
  size_t total_ = 0;
  int index_ = 0;
};

std::string read_file(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  require(static_cast<bool>(file), path + ": cannot open input file");
  std::stringstream buffer;
  buffer << file.rdbuf();
  return buffer.str();
}

// Non-blank lines of a JSONL file = its documents (bad ones included).
size_t count_documents(const std::string& path) {
  if (!ends_with(path, ".jsonl")) return 1;
  std::ifstream file(path, std::ios::binary);
  require(static_cast<bool>(file), path + ": cannot open input file");
  std::string line;
  size_t count = 0;
  while (std::getline(file, line)) count += !is_blank(line);
  return count;
}

class Progress {
 public:
  explicit Progress(size_t total_bytes) : total_(total_bytes), start_(Clock::now()), tty_(isatty(2)) {}
  void update(size_t done, bool final_update = false) {
    double elapsed = std::chrono::duration<double>(Clock::now() - start_).count();
    // On a terminal redraw ~10 times a second; in a log, a line every 5 s.
    double interval = tty_ ? 0.1 : 5.0;
    if (!final_update && elapsed - last_print_ < interval) return;
    last_print_ = elapsed;
    double fraction = total_ ? static_cast<double>(done) / total_ : 1.0;
    double rate = elapsed > 0 ? done / 1e6 / elapsed : 0.0;
    double eta = rate > 0 ? (total_ - done) / 1e6 / rate : 0.0;
    int filled = static_cast<int>(fraction * 30);
    std::fprintf(stderr, "%s[%s%s] %5.1f%%  %.1f/%.1f MB  %.1f MB/s  ETA %.0f s%s", tty_ ? "\r" : "",
                 std::string(filled, '#').c_str(), std::string(30 - filled, ' ').c_str(), 100 * fraction,
                 done / 1e6, total_ / 1e6, rate, eta, tty_ ? "" : "\n");
    if (tty_ && final_update) std::fputc('\n', stderr);
    std::fflush(stderr);
  }

 private:
  size_t total_;
  Clock::time_point start_;
  bool tty_;
  double last_print_ = 0;  // the first line comes after one interval (or at the end)
};

struct ShardOptions {
  std::string prefix;
  double val_fraction;
  long long shard_tokens;
  std::string key;
  bool skip_bad;
  int threads;
};

// Checked before the tokenizer loads, so a bad flag fails at once.
ShardOptions parse_shard_options(const Flags& flags, const std::vector<std::string>& files) {
  const std::string prefix = flags.get_required("out");
  const double val_fraction = flags.get_double("val-fraction", 0.01);
  require(val_fraction >= 0 && val_fraction < 1,
          "flag --val-fraction wants a number in [0, 1), got " + flags.get("val-fraction", ""));
  const long long shard_tokens = flags.get_int("shard-tokens", 100000000);
  require(shard_tokens > 0 && shard_tokens <= 2147483647,
          "flag --shard-tokens wants a count in [1, 2^31-1], got " + std::to_string(shard_tokens));
  const std::string key = flags.get("jsonl-key", "text");
  const bool skip_bad = flags.get_switch("skip-bad");
  const int threads = static_cast<int>(flags.get_int("threads", 0));
  require(!files.empty(), "shards: no input FILES given (polaris_tokenize shards --tokenizer PATH --out PREFIX FILES...)");
  return {prefix, val_fraction, shard_tokens, key, skip_bad, threads};
}

int run_shards(const Tokenizer& tokenizer, const ShardOptions& options, const std::vector<std::string>& files) {
  const std::string& prefix = options.prefix;
  const double val_fraction = options.val_fraction;
  const long long shard_tokens = options.shard_tokens;
  const std::string& key = options.key;
  const bool skip_bad = options.skip_bad;
  const int threads = options.threads;

  // The separator after each document.
  std::vector<int32_t> separator;
  std::string eot = tokenizer.end_of_text_token();
  if (!eot.empty()) {
    separator.push_back(tokenizer.token_to_id(eot));
    std::fprintf(stderr, "document separator: %s (id %d)\n", eot.c_str(), separator[0]);
  } else {
    std::fprintf(stderr, "document separator: none (the tokenizer has no <|endoftext|> or eos token)\n");
  }

  // First pass: sizes (for progress) and document counts (for the val split).
  size_t total_bytes = 0, total_documents = 0;
  for (const std::string& path : files) {
    std::ifstream file(path, std::ios::binary | std::ios::ate);
    require(static_cast<bool>(file), path + ": cannot open input file");
    total_bytes += static_cast<size_t>(file.tellg());
    total_documents += count_documents(path);
  }
  // Keep at least one document in each split when there are two or more.
  size_t val_documents = 0;
  if (val_fraction > 0 && total_documents >= 2)
    val_documents = std::min(total_documents - 1,
                             std::max<size_t>(1, std::llround(total_documents * val_fraction)));
  auto is_val = [&](size_t i) {  // every (total/val)-th document, evenly spread
    return val_documents > 0 && (i + 1) * val_documents / total_documents > i * val_documents / total_documents;
  };

  std::vector<std::string> written;
  ShardWriter train(prefix, "train", static_cast<size_t>(shard_tokens), tokenizer.vocab_size(), &written);
  ShardWriter val(prefix, "val", static_cast<size_t>(shard_tokens), tokenizer.vocab_size(), &written);
  Progress progress(total_bytes);
  auto start = Clock::now();
  size_t document_index = 0, bytes_done = 0, skipped = 0, batch_bytes = 0;
  std::vector<std::string> batch;
  std::vector<size_t> batch_index;
  std::vector<size_t> batch_source_bytes;

  auto flush = [&]() {
    std::vector<std::vector<int32_t>> encoded = tokenizer.encode_batch(batch, threads);
    for (size_t k = 0; k < encoded.size(); ++k) {
      ShardWriter& out = is_val(batch_index[k]) ? val : train;
      out.append(encoded[k]);
      out.append(separator);
    }
    bytes_done += batch_bytes;
    batch.clear();
    batch_index.clear();
    batch_bytes = 0;
    progress.update(bytes_done);
  };
  auto add_document = [&](std::string text, size_t source_bytes) {
    batch.push_back(std::move(text));
    batch_index.push_back(document_index++);
    batch_bytes += source_bytes;
    if (batch_bytes >= (16u << 20) || batch.size() >= 8192) flush();
  };

  try {
    for (const std::string& path : files) {
      if (!ends_with(path, ".jsonl")) {
        std::string text = read_file(path);
        size_t size = text.size();
        add_document(std::move(text), size);
        continue;
      }
      std::ifstream file(path, std::ios::binary);
      require(static_cast<bool>(file), path + ": cannot open input file");
      std::string line;
      size_t line_number = 0;
      while (std::getline(file, line)) {
        ++line_number;
        size_t line_bytes = line.size() + 1;
        if (is_blank(line)) { batch_bytes += line_bytes; continue; }
        std::string problem;
        std::string text = text_of_line(line, key, &problem);
        if (!problem.empty()) {
          if (!skip_bad) throw Error(path + ":" + std::to_string(line_number) + ": " + problem);
          ++skipped;
          ++document_index;  // keep the val assignment of later documents stable
          batch_bytes += line_bytes;
          continue;
        }
        add_document(std::move(text), line_bytes);
      }
    }
    flush();
    train.finish();
    val.finish();
  } catch (...) {
    // Nothing half-done: a failed run leaves no shards behind.
    for (const std::string& path : written) std::remove(path.c_str());
    throw;
  }
  progress.update(total_bytes, /*final_update=*/true);

  double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  if (skipped) std::fprintf(stderr, "skipped %zu bad lines (--skip-bad)\n", skipped);
  if (val_fraction > 0 && val.tokens() == 0)
    std::fprintf(stderr, "warning: no validation shard: %zu document(s) is too few to split\n", total_documents);
  std::fprintf(stderr,
               "done: %zu documents, %zu train tokens in %d shard(s), %zu val tokens in %d shard(s), "
               "%s tokens, %.1f MB in %.1f s (%.1f MB/s) -> %s_{train,val}_*.bin\n",
               total_documents - skipped, train.tokens(), train.shards(), val.tokens(), val.shards(),
               tokenizer.vocab_size() > 65535 ? "uint32" : "uint16", total_bytes / 1e6, seconds,
               seconds > 0 ? total_bytes / 1e6 / seconds : 0.0, prefix.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return run_main([&]() {
    Flags flags(argc, argv, {"tokenizer", "out", "val-fraction", "shard-tokens", "jsonl-key", "threads"},
                {"skip-bad"});
    const std::vector<std::string>& args = flags.positional();
    require(!args.empty(), "missing command: polaris_tokenize encode|decode|shards --tokenizer PATH ...");
    const std::string& command = args[0];
    require(command == "encode" || command == "decode" || command == "shards",
            "unknown command '" + command + "' (expected encode, decode or shards)");
    if (command != "shards") {
      require(args.size() == 1, command + ": unexpected argument '" + args[1] + "' (input is read from stdin)");
      for (const char* name : {"out", "val-fraction", "shard-tokens"})
        require(!flags.has(name), std::string("--") + name + " applies only to `shards`");
    }
    if (command == "decode")
      for (const char* name : {"jsonl-key", "threads"})
        require(!flags.has(name), std::string("--") + name + " does not apply to `decode`");
    const std::vector<std::string> files(args.begin() + 1, args.end());
    ShardOptions shard_options;
    if (command == "shards") shard_options = parse_shard_options(flags, files);
    Tokenizer tokenizer = Tokenizer::load(flags.get_required("tokenizer"));
    std::ios::sync_with_stdio(false);
    if (command == "encode")
      return run_encode(tokenizer, flags.get("jsonl-key", "text"), flags.get_switch("skip-bad"),
                        static_cast<int>(flags.get_int("threads", 0)));
    if (command == "decode") return run_decode(tokenizer, flags.get_switch("skip-bad"));
    return run_shards(tokenizer, shard_options, files);
  });
}
