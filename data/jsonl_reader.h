// JSONL reading shared by the SFT and RL datasets.
//
// One JSON value per line; blank lines are ignored. Every problem is reported
// as "FILE:LINE: problem" (lines count from 1). With skip_bad, a bad line is
// skipped and counted instead of ending the load; a file with no good record
// at all is still an Error, since training on nothing is never intended.
#pragma once
#include <cstddef>
#include <functional>
#include <string>
#include <utility>

#include <nlohmann/json.hpp>

namespace polaris {

// Calls parse_record(value, line_number) for each line's JSON value. parse_record reports
// a bad record by throwing Error with just the problem ("missing \"answer\"");
// the reader adds "FILE:LINE: ". Returns the number of bad lines skipped.
// Throws Error when the file cannot be read, is empty, or has no good record.
size_t read_jsonl(const std::string& path, bool skip_bad,
                  const std::function<void(const nlohmann::json&, size_t line)>& parse_record);

// A whole dataset through read_jsonl: Dataset has `path`, `skipped_lines` and
// `examples`; parse(record) returns one example, whose `line` is then set.
template <typename Dataset, typename Parse>
Dataset read_jsonl_dataset(const std::string& path, bool skip_bad, Parse parse) {
  Dataset dataset;
  dataset.path = path;
  dataset.skipped_lines = read_jsonl(path, skip_bad, [&](const nlohmann::json& record, size_t line) {
    auto example = parse(record);
    example.line = line;
    dataset.examples.push_back(std::move(example));
  });
  return dataset;
}

}  // namespace polaris
