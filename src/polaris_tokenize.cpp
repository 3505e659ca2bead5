// polaris_tokenize: text <-> token ids, and text corpora -> token shard files.
// Usage: usage() and kFlags below (polaris_tokenize --help).
//
// Blank input lines are skipped. A malformed line is an error "FILE:LINE: problem";
// with --skip-bad it is skipped and counted instead. The validation split
// (ValidationSplit below) holds out every k-th good document when documents are
// many and even, else the middle of evenly spaced stretches of tokens; the
// summary says which.
//
// shards reads its inputs twice: a first pass checks every file and counts its
// documents (for the validation split and the progress bar) before anything is
// written; the second encodes. Plain-text files stream in pieces cut at line
// starts, so memory stays bounded and a large file is encoded on every thread.
#include <unistd.h>
#include <utf8proc.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "data/json_input.h"
#include "data/token_shards.h"
#include "data/tokenizer.h"
#include "data/tokenizer_id.h"
#include "src/common/cli.h"
#include "src/common/threads.h"

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

// Offset of the first byte that is not part of valid UTF-8, or npos.
size_t first_invalid_utf8(const std::string& text) {
  const auto* bytes = reinterpret_cast<const utf8proc_uint8_t*>(text.data());
  for (size_t i = 0; i < text.size();) {
    if (bytes[i] < 0x80) { ++i; continue; }
    utf8proc_int32_t code_point;
    utf8proc_ssize_t length = utf8proc_iterate(bytes + i, static_cast<utf8proc_ssize_t>(text.size() - i), &code_point);
    if (length <= 0) return i;
    i += static_cast<size_t>(length);
  }
  return std::string::npos;
}

// One JSONL line as JSON; a discarded value with *problem set when it is not.
// Invalid UTF-8 gets its own message: the JSON parser would only say "malformed".
json parse_line(const std::string& line, std::string* problem) {
  size_t bad_byte = first_invalid_utf8(line);
  if (bad_byte != std::string::npos) {
    *problem = "invalid UTF-8 at byte " + std::to_string(bad_byte + 1);
    return json(json::value_t::discarded);
  }
  json record;
  std::string why;
  if (!parse_json_bounded(line, &record, &why)) {  // depth-bounded: no stack overflow
    *problem = "malformed JSON (" + why + ")";
    return json(json::value_t::discarded);
  }
  return record;
}

// Reads the document out of one JSONL line; "" in *problem when fine.
std::string text_of_line(const std::string& line, const std::string& key, std::string* problem) {
  json record = parse_line(line, problem);
  if (record.is_discarded()) return "";
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

// What --skip-bad writes in place of a skipped line, so that output line k
// still answers the k-th non-blank input line.
std::string skipped_line_placeholder(const std::string& error) { return dump_json({{"error", error}}); }

int run_encode(const Tokenizer& tokenizer, const std::string& key, bool skip_bad, int threads) {
  std::string line;
  size_t line_number = 0, skipped = 0;
  struct Line {
    std::string text;
    std::string error;  // set when the line was skipped
  };
  std::vector<Line> batch;
  auto flush = [&]() {
    std::vector<std::string> texts;
    for (Line& l : batch)
      if (l.error.empty()) texts.push_back(std::move(l.text));
    std::vector<std::vector<int32_t>> encoded = tokenizer.encode_batch(texts, threads);
    size_t next = 0;
    for (const Line& l : batch)
      std::cout << (l.error.empty() ? dump_json({{"ids", encoded[next++]}}) : skipped_line_placeholder(l.error))
                << '\n';
    batch.clear();
  };
  while (std::getline(std::cin, line)) {
    ++line_number;
    if (is_blank(line)) continue;
    std::string problem;
    std::string text = text_of_line(line, key, &problem);
    if (!problem.empty()) {
      std::string error = "<stdin>:" + std::to_string(line_number) + ": " + problem;
      if (!skip_bad) throw Error(error);
      ++skipped;
      batch.push_back({"", error});
    } else {
      batch.push_back({std::move(text), ""});
    }
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
    json record = parse_line(line, &problem);  // sets problem when discarded
    if (!record.is_discarded() && (!record.is_object() || !record.contains("ids") || !record["ids"].is_array())) {
      problem = "no array field \"ids\"";
    } else if (!record.is_discarded()) {
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
      std::cout << skipped_line_placeholder(where + problem) << '\n';
      continue;
    }
    std::cout << dump_json({{"text", text}}) << '\n';
  }
  if (skipped) std::fprintf(stderr, "skipped %zu bad lines\n", skipped);
  return 0;
}

// --- shards ----------------------------------------------------------------

// A run writes its shards as PREFIX_<split>_NNNNNN.bin.pending and renames them
// into place only once it has succeeded, so a run that fails midway leaves the
// shards of an earlier run into the same prefix as they were.
const char* kPendingSuffix = ".pending";

// Collects one split's tokens and writes PREFIX_<split>_NNNNNN.bin files of
// shard_tokens tokens each (the last one shorter), as pending files; `written`
// collects the final names. Each header records the tokenizer (data/tokenizer_id.h).
class ShardWriter {
 public:
  ShardWriter(std::string prefix, std::string split, size_t shard_tokens,
              const TokenizerId& tokenizer, std::vector<std::string>* written)
      : prefix_(std::move(prefix)), split_(std::move(split)), shard_tokens_(shard_tokens),
        tokenizer_(tokenizer), written_(written) {}

  void append(const int32_t* ids, size_t count) {
    for (size_t i = 0; i < count; ++i) {
      buffer_.push_back(static_cast<uint32_t>(ids[i]));
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
    write_token_shard(path + kPendingSuffix, buffer_, tokenizer_.vocab_size, tokenizer_);
    written_->push_back(path);
    total_ += buffer_.size();
    buffer_.clear();
  }
  std::string prefix_, split_;
  size_t shard_tokens_;
  TokenizerId tokenizer_;
  std::vector<std::string>* written_;
  std::vector<uint32_t> buffer_;
  size_t total_ = 0;
  int index_ = 0;
};

// One input file of `shards`, as the first pass found it.
struct InputFile {
  std::string path;
  bool jsonl;
  size_t bytes;
  size_t documents;  // good documents: those the second pass encodes
  size_t largest_document;  // bytes (a JSONL line)
};

// Checks one input and counts its documents. Without --skip-bad every non-blank
// JSONL line counts, since a bad one ends the run anyway; with it, lines are
// parsed here too, so the validation split is chosen among good documents only.
InputFile survey_input(const std::string& path, const std::string& key, bool skip_bad) {
  std::error_code error;
  const std::filesystem::file_status status = std::filesystem::status(path, error);
  if (error) throw Error(path + ": cannot open input file: " + error.message());
  if (std::filesystem::is_directory(status)) throw Error(path + ": is a directory");
  if (!std::filesystem::is_regular_file(status)) throw Error(path + ": not a regular file");
  InputFile input{path, ends_with(path, ".jsonl"), std::filesystem::file_size(path), 0, 0};
  if (!input.jsonl) {
    input.documents = input.bytes > 0 ? 1 : 0;
    input.largest_document = input.bytes;
    require(input.documents > 0, path + ": no documents (empty file)");
    return input;
  }
  std::ifstream file(path, std::ios::binary);
  require(static_cast<bool>(file), path + ": cannot open input file");
  std::string line, problem;
  size_t bad = 0;
  while (std::getline(file, line)) {
    if (is_blank(line)) continue;
    if (skip_bad) text_of_line(line, key, &problem);
    if (problem.empty()) {
      ++input.documents;
      input.largest_document = std::max(input.largest_document, line.size());
    } else {
      ++bad;
    }
  }
  if (input.documents == 0)
    throw Error(path + ": no documents (" +
                (bad ? std::to_string(bad) + " bad lines skipped by --skip-bad" : std::string("only blank lines")) +
                ")");
  return input;
}

// Whether a plain-text document can be encoded in pieces cut right after a "\n"
// that a letter, mark, number, punctuation or symbol follows, with the ids of
// encoding it whole. It can for the supported pre-tokenizer patterns (a newline
// run before such a character always ends a pre-token), unless an added token
// spans such a newline, an added token with lstrip could begin a piece (in the
// whole text it swallows the newlines before it, which a cut puts in the
// previous piece), or the tokenizer adds a prefix space to every piece. rstrip
// is no obstacle: a token ending a piece swallows its trailing newlines either way.
bool newline_cuts_keep_ids(const Tokenizer& tokenizer) {
  for (int id = 0; id < tokenizer.vocab_size(); ++id) {
    if (!tokenizer.is_added_token(id)) continue;
    if (tokenizer.is_lstrip_token(id)) return false;
    const std::string token = tokenizer.id_to_token(id);
    const size_t newline = token.find('\n');
    if (newline != std::string::npos && newline + 1 < token.size()) return false;
  }
  for (const auto& [before, after] : {std::pair<std::string, std::string>{"one.\n", "Two"},
                                       {"x = 1\n", "y"}, {"a\n\n", "(b)"}}) {
    std::vector<int32_t> pieces = tokenizer.encode(before), rest = tokenizer.encode(after);
    pieces.insert(pieces.end(), rest.begin(), rest.end());
    if (pieces != tokenizer.encode(before + after)) return false;
  }
  return true;
}

// Where a plain-text piece may end: right after a "\n" whose next character is a
// letter, mark, number, punctuation or symbol (never whitespace, in any Unicode
// version). Returns the last such cut in text[from, text.size()), or 0 when none.
size_t last_newline_cut(const std::string& text, size_t from) {
  for (size_t newline = text.rfind('\n'); newline != std::string::npos && newline >= from;
       newline = newline ? text.rfind('\n', newline - 1) : std::string::npos) {
    size_t next = newline + 1;
    utf8proc_int32_t code_point;
    if (utf8proc_iterate(reinterpret_cast<const utf8proc_uint8_t*>(text.data()) + next,
                         static_cast<utf8proc_ssize_t>(text.size() - next), &code_point) <= 0)
      continue;  // at the end of the text, or invalid UTF-8
    // Letters, marks, numbers, punctuation and symbols are one range of categories.
    utf8proc_category_t category = utf8proc_category(code_point);
    if (category >= UTF8PROC_CATEGORY_LU && category <= UTF8PROC_CATEGORY_SO) return next;
  }
  return 0;
}

// Reads a plain-text file as pieces of about `piece_bytes` (0: the whole file),
// each ending at a last_newline_cut. A stretch with no cut grows the piece until
// one comes (a file with no line breaks is read whole).
class TextPieces {
 public:
  TextPieces(const std::string& path, size_t piece_bytes)
      : file_(path, std::ios::binary), piece_bytes_(piece_bytes) {
    require(static_cast<bool>(file_), path + ": cannot open input file");
  }
  // The next piece into *piece; false at the end of the file.
  bool next(std::string* piece) {
    size_t searched = 0;  // pending_[0, searched) holds no cut
    for (size_t want = piece_bytes_;; want += piece_bytes_) {
      read_up_to(piece_bytes_ ? want : SIZE_MAX);
      if (file_.eof()) {
        *piece = std::move(pending_);
        pending_.clear();
        return !piece->empty();
      }
      size_t cut = last_newline_cut(pending_, searched);
      if (cut > 0) {
        piece->assign(pending_, 0, cut);
        pending_.erase(0, cut);
        return true;
      }
      // A newline in the last 4 bytes may yet be followed by a character that ends it.
      searched = pending_.size() > 4 ? pending_.size() - 4 : 0;
    }
  }

 private:
  void read_up_to(size_t size) {
    char buffer[1 << 16];
    while (pending_.size() < size && file_.read(buffer, std::min(sizeof(buffer), size - pending_.size())))
      pending_.append(buffer, static_cast<size_t>(file_.gcount()));
    pending_.append(buffer, file_.eof() ? static_cast<size_t>(file_.gcount()) : 0);
  }
  std::ifstream file_;
  size_t piece_bytes_;
  std::string pending_;
};

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
  size_t text_piece_bytes;
};

int threads_flag(const Flags& flags) {
  const long long threads = flags.integer("threads");
  require(threads >= 0 && threads <= 65536, "--threads must be >= 0 (0: every core), got " + std::to_string(threads));
  return static_cast<int>(threads);
}

// Checked before the tokenizer loads, so a bad flag fails at once.
ShardOptions parse_shard_options(const Flags& flags, const std::vector<std::string>& files) {
  const std::string prefix = flags.required_text("out");
  // Shards are named PREFIX_train_000000.bin: an empty prefix or a directory
  // ("x/") would give nameless files such as x/_train_000000.bin.
  require(!prefix.empty() && prefix.back() != '/',
          "--out wants a path prefix with a file name part, such as data/corpus (got '" + prefix + "')");
  const double val_fraction = flags.number("val-fraction");
  require(val_fraction >= 0 && val_fraction < 1,
          "flag --val-fraction wants a number in [0, 1), got " + flags.text("val-fraction"));
  const long long shard_tokens = flags.count("shard-tokens");
  const std::string key = flags.text("jsonl-key");
  const bool skip_bad = flags.has("skip-bad");
  const long long piece_bytes = flags.count("chunk-bytes");
  require(!files.empty(),
          "shards: no input FILES given (polaris_tokenize shards --tokenizer PATH --out PREFIX FILES...)");
  return {prefix, val_fraction, shard_tokens, key, skip_bad, threads_flag(flags), static_cast<size_t>(piece_bytes)};
}

// Removes directories this run created (innermost last in the list), if empty.
void remove_directories(const std::vector<std::string>& created) {
  for (auto it = created.rbegin(); it != created.rend(); ++it) ::rmdir(it->c_str());
}

// Creates the missing directories of --out's prefix (like mkdir -p of its
// parent); returns those it created, outermost first, so that a failed run can
// remove them again.
std::vector<std::string> create_out_directories(const std::string& prefix) {
  std::vector<std::string> created;
  std::filesystem::path directory;
  for (const std::filesystem::path& part : std::filesystem::path(prefix).parent_path()) {
    directory /= part;
    std::error_code error;
    if (std::filesystem::is_directory(directory, error)) continue;
    if (!std::filesystem::create_directory(directory, error) || error) {
      remove_directories(created);
      throw Error("--out " + prefix + ": cannot create directory " + directory.string() + ": " +
                  (error ? error.message() : "a file of that name exists"));
    }
    created.push_back(directory.string());
  }
  return created;
}

// The index NNNNNN of a file named PREFIX_<split>_NNNNNN.bin (by its file
// name part, `name_prefix`), or -1 for any other file.
long long shard_index(const std::string& file_name, const std::string& name_prefix, const std::string& split) {
  const std::string start = name_prefix + "_" + split + "_";
  if (file_name.size() <= start.size() + 4 || file_name.compare(0, start.size(), start) != 0 ||
      !ends_with(file_name, ".bin"))
    return -1;
  const std::string digits = file_name.substr(start.size(), file_name.size() - start.size() - 4);
  if (digits.size() < 6 || digits.size() > 12 ||
      !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return -1;
  return std::stoll(digits);
}

// Renames this run's pending shards into place, then removes the shards an
// earlier, larger run left under the same prefix beyond this run's counts: a
// trainer globbing PREFIX_train_*.bin must see this run's corpus only.
void commit_shards(const std::string& prefix, const std::vector<std::string>& written, int train_shards,
                   int val_shards) {
  for (const std::string& path : written) {
    std::error_code error;
    std::filesystem::rename(path + kPendingSuffix, path, error);
    if (error) throw Error(path + kPendingSuffix + ": cannot rename to " + path + ": " + error.message());
  }
  const std::filesystem::path prefix_path(prefix);
  const std::filesystem::path directory = prefix_path.has_parent_path() ? prefix_path.parent_path() : ".";
  const std::string name_prefix = prefix_path.filename().string();
  for (const auto& entry : std::filesystem::directory_iterator(directory)) {
    const std::string file_name = entry.path().filename().string();
    if (shard_index(file_name, name_prefix, "train") < train_shards &&
        shard_index(file_name, name_prefix, "val") < val_shards)
      continue;
    std::error_code error;
    std::filesystem::remove(entry.path(), error);
    if (error) throw Error(entry.path().string() + ": cannot remove this shard of an earlier run: " + error.message());
  }
}

// Which tokens are held out for validation (--val-fraction f).
//
// By documents when there are many of even size: every k-th document, spread
// through the corpus, so the split does not depend on how the corpus is
// ordered into files. "Many and even" is judged from the first pass: at least
// kMinValDocuments held out, and no document larger than 1/8 of the
// validation budget (f x the corpus's bytes), so no single document can tip
// the share.
//
// By tokens otherwise (a large text file beside a few JSONL lines would send
// the whole file one way): the token stream is cut into n stretches of P
// tokens, and the middle f x P tokens of each are held out. P comes from an
// estimate of the corpus's tokens (its bytes / 6, an underestimate for most
// text, so even the first stretch's middle is reached); n aims at held-out
// runs of about kHeldOutRun tokens, at most kMaxStretches of them.
class ValidationSplit {
 public:
  static constexpr size_t kMinValDocuments = 8;
  static constexpr double kHeldOutRun = 512;
  static constexpr double kMaxStretches = 1000;

  static ValidationSplit choose(double fraction, size_t documents, size_t bytes,
                                size_t largest_document) {
    ValidationSplit split;
    split.fraction_ = fraction;
    if (fraction <= 0 || documents == 0) return split;
    const double val_documents = std::round(double(documents) * fraction);
    if (val_documents >= kMinValDocuments && largest_document * 8.0 <= fraction * double(bytes)) {
      split.val_documents_ = size_t(val_documents);
      split.documents_ = documents;
      return split;
    }
    const double tokens = std::max(1.0, double(bytes) / 6);
    const double stretches = std::clamp(std::floor(tokens * fraction / kHeldOutRun), 1.0, kMaxStretches);
    split.by_tokens_ = true;
    split.period_ = std::max<size_t>(1, size_t(tokens / stretches));
    split.span_ = std::max<size_t>(1, size_t(std::llround(double(split.period_) * fraction)));
    split.offset_ = (split.period_ - std::min(split.span_, split.period_)) / 2;
    return split;
  }

  // Whether the token at `position` of the stream, in document `document`, is held out.
  bool held_out(size_t document, size_t position) const {
    if (by_tokens_) {
      const size_t r = position % period_;
      return r >= offset_ && r < offset_ + span_;
    }
    // every (documents / val)-th document, evenly spread
    return val_documents_ > 0 &&
           (document + 1) * val_documents_ / documents_ > document * val_documents_ / documents_;
  }
  // Tokens from `position` on that stay on the same side.
  size_t run_length(size_t position) const {
    if (!by_tokens_) return SIZE_MAX;
    const size_t r = position % period_;
    return r < offset_ ? offset_ - r : r < offset_ + span_ ? offset_ + span_ - r : period_ - r;
  }

  std::string describe(size_t documents) const {
    char text[256];
    if (fraction_ <= 0)
      std::snprintf(text, sizeof(text), "none (--val-fraction 0)");
    else if (by_tokens_)
      std::snprintf(text, sizeof(text),
                    "by tokens (%zu document(s), too few or too uneven to hold out whole ones): "
                    "the middle %zu of every %zu tokens",
                    documents, span_, period_);
    else
      std::snprintf(text, sizeof(text), "by documents: %zu of %zu, spread evenly", val_documents_,
                    documents_);
    return text;
  }

 private:
  double fraction_ = 0;
  bool by_tokens_ = false;
  size_t val_documents_ = 0, documents_ = 0;  // by documents
  size_t period_ = 1, span_ = 0, offset_ = 0;  // by tokens
};

int run_shards(const Tokenizer& tokenizer, const TokenizerId& tokenizer_id, const ShardOptions& options,
               const std::vector<std::string>& files) {
  // First pass: every input checked, sizes (for progress) and document counts (for the val split).
  std::vector<InputFile> inputs;
  size_t total_bytes = 0, total_documents = 0, largest_document = 0;
  for (const std::string& path : files) {
    inputs.push_back(survey_input(path, options.key, options.skip_bad));
    total_bytes += inputs.back().bytes;
    total_documents += inputs.back().documents;
    largest_document = std::max(largest_document, inputs.back().largest_document);
  }
  const ValidationSplit split =
      ValidationSplit::choose(options.val_fraction, total_documents, total_bytes, largest_document);
  // The separator after each document.
  std::vector<int32_t> separator;
  const std::string eot = tokenizer.end_of_text_token();
  if (!eot.empty()) separator.push_back(tokenizer.token_to_id(eot));
  const bool text_inputs = std::any_of(inputs.begin(), inputs.end(), [](const InputFile& f) { return !f.jsonl; });
  const size_t text_piece_bytes = text_inputs && newline_cuts_keep_ids(tokenizer) ? options.text_piece_bytes : 0;

  // Every input is fine: from here on a failure is a problem of the output (or
  // a bad JSONL line without --skip-bad), which the cleanup below undoes. Notes
  // wait for the summary, so that a failed run prints just its error line.
  const std::vector<std::string> created_directories = create_out_directories(options.prefix);

  std::vector<std::string> written;
  const size_t shard_tokens = static_cast<size_t>(options.shard_tokens);
  ShardWriter train(options.prefix, "train", shard_tokens, tokenizer_id, &written);
  ShardWriter val(options.prefix, "val", shard_tokens, tokenizer_id, &written);
  Progress progress(total_bytes);
  auto start = Clock::now();
  size_t document_index = 0, bytes_done = 0, skipped = 0, batch_bytes = 0;
  // A batch holds whole JSONL documents and pieces of plain-text ones; the
  // separator follows a document's last piece only.
  struct Piece {
    size_t document;
    bool ends_document;
  };
  std::vector<std::string> batch;
  std::vector<Piece> batch_pieces;

  size_t position = 0;  // tokens routed so far
  // Tokens go to train or val run by run: a document whole (a document
  // split), or cut where a held-out stretch begins or ends (a token split).
  auto route = [&](const std::vector<int32_t>& ids, size_t document) {
    size_t begin = 0;
    while (begin < ids.size()) {
      const bool held_out = split.held_out(document, position);
      const size_t run = std::min(ids.size() - begin, split.run_length(position));
      (held_out ? val : train).append(ids.data() + begin, run);
      begin += run;
      position += run;
    }
  };
  auto flush = [&]() {
    std::vector<std::vector<int32_t>> encoded = tokenizer.encode_batch(batch, options.threads);
    for (size_t k = 0; k < encoded.size(); ++k) {
      route(encoded[k], batch_pieces[k].document);
      if (batch_pieces[k].ends_document) route(separator, batch_pieces[k].document);
    }
    bytes_done += batch_bytes;
    batch.clear();
    batch_pieces.clear();
    batch_bytes = 0;
    progress.update(bytes_done);
  };
  auto add_piece = [&](std::string text, size_t source_bytes, bool ends_document) {
    batch.push_back(std::move(text));
    batch_pieces.push_back({document_index, ends_document});
    if (ends_document) ++document_index;
    batch_bytes += source_bytes;
    if (batch_bytes >= (16u << 20) || batch.size() >= 8192) flush();
  };

  try {
    for (const InputFile& input : inputs) {
      if (!input.jsonl) {
        TextPieces pieces(input.path, text_piece_bytes);
        std::string piece, next_piece;
        bool more = pieces.next(&piece);
        while (more) {  // one piece ahead, to know which piece is the last
          more = pieces.next(&next_piece);
          size_t size = piece.size();
          add_piece(std::move(piece), size, /*ends_document=*/!more);
          piece = std::move(next_piece);
        }
        continue;
      }
      std::ifstream file(input.path, std::ios::binary);
      require(static_cast<bool>(file), input.path + ": cannot open input file");
      std::string line;
      size_t line_number = 0;
      while (std::getline(file, line)) {
        ++line_number;
        size_t line_bytes = line.size() + 1;
        if (is_blank(line)) { batch_bytes += line_bytes; continue; }
        std::string problem;
        std::string text = text_of_line(line, options.key, &problem);
        if (!problem.empty()) {
          if (!options.skip_bad) throw Error(input.path + ":" + std::to_string(line_number) + ": " + problem);
          ++skipped;
          batch_bytes += line_bytes;
          continue;
        }
        add_piece(std::move(text), line_bytes, /*ends_document=*/true);
      }
    }
    flush();
    train.finish();
    val.finish();
  } catch (...) {
    // Nothing half-done: a failed run leaves none of its shards, nor directories
    // it made, behind, and an earlier run's shards untouched.
    for (const std::string& path : written) std::remove((path + kPendingSuffix).c_str());
    remove_directories(created_directories);
    throw;
  }
  commit_shards(options.prefix, written, train.shards(), val.shards());
  progress.update(total_bytes, /*final_update=*/true);

  double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  if (!eot.empty())
    std::fprintf(stderr, "document separator: %s (id %d)\n", eot.c_str(), separator[0]);
  else
    std::fprintf(stderr, "document separator: none (the tokenizer has no <|endoftext|> or eos token)\n");
  if (text_inputs && text_piece_bytes == 0)
    std::fprintf(stderr, "note: this tokenizer's ids could change at a line cut, so text files were read whole\n");
  if (skipped) std::fprintf(stderr, "skipped %zu bad lines (--skip-bad)\n", skipped);
  std::fprintf(stderr, "validation split: %s\n", split.describe(total_documents).c_str());
  if (options.val_fraction > 0 && val.tokens() == 0)
    std::fprintf(stderr, "warning: no validation shard: the corpus is too small to split\n");
  std::fprintf(stderr,
               "done: %zu documents, %zu train tokens in %d shard(s), %zu val tokens in %d shard(s), "
               "%s tokens, %.1f MB in %.1f s (%.1f MB/s) -> %s_{train,val}_*.bin\n",
               document_index, train.tokens(), train.shards(), val.tokens(), val.shards(),
               tokenizer.vocab_size() > 65535 ? "uint32" : "uint16", total_bytes / 1e6, seconds,
               seconds > 0 ? total_bytes / 1e6 / seconds : 0.0, options.prefix.c_str());
  return 0;
}

using T = FlagType;
// FlagSpec::scope: the commands that read a flag.
enum Command : unsigned { kEncode = 1, kDecode = 2, kShards = 4 };

// Each flag once (README.md's polaris_tokenize table lists the same ones).
const std::vector<FlagSpec> kFlags = {
    {"tokenizer", T::text, "FILE", "", "tokenizer.json (required)", kEncode | kDecode | kShards},
    {"jsonl-key", T::text, "KEY", "text", "the JSONL field holding each document's text",
     kEncode | kShards},
    {"threads", T::integer, "N", "0", "encoding threads (0: every core)", kEncode | kShards},
    {"skip-bad", T::toggle, "", "",
     "skip and count malformed lines (encode and decode write {\"error\": ...} in their place)",
     kEncode | kDecode | kShards},
    {"out", T::text, "PREFIX", "", "shards: write PREFIX_train_*.bin and PREFIX_val_*.bin",
     kShards},
    {"val-fraction", T::number, "F", "0.01", "the share held out for validation", kShards},
    {"shard-tokens", T::count, "N", "100000000", "tokens per shard file", kShards},
    {"chunk-bytes", T::count, "N", "1048576",
     "plain-text files are encoded in pieces of about N bytes cut at line starts", kShards},
};

std::string usage() {
  return R"(usage:
  polaris_tokenize encode --tokenizer PATH [flags]
      stdin: JSONL {"text": "..."}      stdout: {"ids": [...]} per line
  polaris_tokenize decode --tokenizer PATH [flags]
      stdin: JSONL {"ids": [...]}       stdout: {"text": "..."} per line
      Blank input lines are skipped; each other line gets one output line.
  polaris_tokenize shards --tokenizer PATH --out PREFIX [flags] FILES...
      Each non-blank line of a .jsonl file is a document (its --jsonl-key field);
      any other file is one document of plain text, read and encoded in pieces
      of about --chunk-bytes cut at line starts (the ids are those of the whole
      file). Writes PREFIX_train_000000.bin, ... and PREFIX_val_000000.bin, ...
      (format: data/token_shards.h), creating PREFIX's directory if needed, with
      the tokenizer's end-of-text token after every document; uint32 tokens when
      the vocabulary has more than 65,535 ids. An input that is a directory or
      holds no document is an error.

flags:
)" + describe_flags(kFlags, [](const FlagSpec& spec) {
           std::string commands;
           for (auto [bit, name] : {std::pair<unsigned, const char*>{kEncode, "encode"},
                                    {kDecode, "decode"}, {kShards, "shards"}})
             if (spec.scope & bit) commands += (commands.empty() ? "" : ", ") + std::string(name);
           return commands;
         });
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
    const std::vector<std::string>& args = flags.positional();
    require(!args.empty(), "missing command: polaris_tokenize encode|decode|shards --tokenizer PATH ...");
    const std::string& command = args[0];
    require(command == "encode" || command == "decode" || command == "shards",
            "unknown command '" + command + "' (expected encode, decode or shards)");
    if (command != "shards")
      require(args.size() == 1, command + ": unexpected argument '" + args[1] + "' (input is read from stdin)");
    const unsigned command_bit = command == "encode" ? kEncode : command == "decode" ? kDecode : kShards;
    for (const FlagSpec& spec : kFlags)
      require(!flags.has(spec.name) || (spec.scope & command_bit),
              std::string("--") + spec.name + " does not apply to `" + command + "`");
    const std::vector<std::string> files(args.begin() + 1, args.end());
    ShardOptions shard_options;
    if (command == "shards") shard_options = parse_shard_options(flags, files);
    const int threads = threads_flag(flags);
    const std::string tokenizer_path = flags.required_text("tokenizer");
    Tokenizer tokenizer = Tokenizer::load(tokenizer_path);
    std::ios::sync_with_stdio(false);
    if (command == "encode")
      return run_encode(tokenizer, flags.text("jsonl-key"), flags.has("skip-bad"), threads);
    if (command == "decode") return run_decode(tokenizer, flags.has("skip-bad"));
    return run_shards(tokenizer, tokenizer_id(tokenizer_path, tokenizer.vocab_size()), shard_options,
                      files);
  });
}
