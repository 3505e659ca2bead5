// Bounded JSON input: every JSON file or line the programs read goes through here.
//
// A hostile input must end in one error line naming the file, never in a stack
// overflow or an allocation of gigabytes. Two limits hold for every JSON input:
//   - nesting: at most kJsonMaxDepth levels of arrays/objects (nlohmann::json
//     copies and dumps values recursively, so deeper values could overflow the
//     stack later even though its parser is iterative);
//   - size: each kind of input has a byte limit (below), checked against the
//     file's size before anything is read.
// Errors are "<file>: <problem>" and name the limit that was hit.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

namespace polaris {

constexpr int kJsonMaxDepth = 64;

constexpr uint64_t kMiB = uint64_t(1) << 20;
// config.json, model.safetensors.index.json, tokenizer_config.json, expected.json
constexpr uint64_t kJsonConfigMaxBytes = 16 * kMiB;
// tokenizer.json (the largest hub tokenizers are ~35 MB)
constexpr uint64_t kJsonTokenizerMaxBytes = 256 * kMiB;
// a safetensors header (the limit the safetensors library itself applies)
constexpr uint64_t kJsonSafetensorsHeaderMaxBytes = 100 * kMiB;
// a checkpoint's state.json
constexpr uint64_t kJsonStateMaxBytes = 64 * kMiB;
// one line of a JSONL dataset
constexpr uint64_t kJsonlLineMaxBytes = 64 * kMiB;

// "nested deeper than 64 levels (the JSON nesting limit)"
std::string json_depth_problem(int max_depth = kJsonMaxDepth);
// "N bytes, over the M MiB limit for <kind>"
std::string json_size_problem(uint64_t bytes, uint64_t max_bytes, const std::string& kind);

// Parses `text` into *out with at most max_depth levels of nesting. On failure
// returns false and sets *problem (one line; the parser's message, or
// json_depth_problem) and *error_byte (where the parser stopped; 0 when unknown).
bool parse_json_bounded(const std::string& text, nlohmann::json* out, std::string* problem,
                        size_t* error_byte = nullptr, int max_depth = kJsonMaxDepth);

// parse_json_bounded or Error("<where>: <malformed>: <problem>"), where a depth
// overflow reads "<where>: nested deeper than ...".
nlohmann::json parse_json_or_throw(const std::string& text, const std::string& where,
                                   const std::string& malformed = "malformed JSON");

// The bytes of `path`, after checking (before reading) that it is a regular
// file of at most max_bytes. Error "<path>: cannot open: ...", "<path>: is a
// directory", "<path>: N bytes, over the ... limit for <kind>".
std::string read_text_file_bounded(const std::string& path, uint64_t max_bytes,
                                   const std::string& kind);

// read_text_file_bounded + parse_json_or_throw.
nlohmann::json read_json_file(const std::string& path, uint64_t max_bytes, const std::string& kind,
                              const std::string& malformed = "malformed JSON");

}  // namespace polaris
