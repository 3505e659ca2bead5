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

#include <nlohmann/json.hpp>

namespace polaris {

// Calls parse_record(value, line_number) for each line's JSON value. parse_record reports
// a bad record by throwing Error with just the problem ("missing \"answer\"");
// the reader adds "FILE:LINE: ". Returns the number of bad lines skipped.
// Throws Error when the file cannot be read, is empty, or has no good record.
size_t read_jsonl(const std::string& path, bool skip_bad,
                  const std::function<void(const nlohmann::json&, size_t line)>& parse_record);

}  // namespace polaris
