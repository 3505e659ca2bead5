// JSONL reading (see jsonl_reader.h).
#include "data/jsonl_reader.h"

#include <cstring>
#include <filesystem>
#include <fstream>
#include <istream>
#include <vector>

#include "data/json_input.h"
#include "src/common/error.h"

namespace polaris {

namespace {

// std::getline with a length limit: next() reads one line into *line (without
// the '\n'); a longer line is consumed to its end but not stored (*too_long
// set), so one huge line cannot exhaust memory. False at the end of the input.
class BoundedLineReader {
 public:
  explicit BoundedLineReader(std::istream& in) : in_(in), buffer_(1 << 16) {}

  bool next(std::string* line, uint64_t max_bytes, bool* too_long) {
    line->clear();
    *too_long = false;
    bool any = false;
    for (;;) {
      if (pos_ == end_ && !fill()) return any;
      any = true;
      const char* start = buffer_.data() + pos_;
      const size_t available = end_ - pos_;
      const char* newline = static_cast<const char*>(std::memchr(start, '\n', available));
      const size_t take = newline ? size_t(newline - start) : available;
      if (!*too_long) {
        if (line->size() + take > max_bytes) {
          *too_long = true;
          line->clear();
        } else {
          line->append(start, take);
        }
      }
      pos_ += take;
      if (newline) {
        ++pos_;
        return true;
      }
    }
  }

 private:
  bool fill() {
    in_.read(buffer_.data(), std::streamsize(buffer_.size()));
    pos_ = 0;
    end_ = size_t(in_.gcount());
    return end_ > 0;
  }

  std::istream& in_;
  std::vector<char> buffer_;
  size_t pos_ = 0, end_ = 0;
};

}  // namespace

size_t read_jsonl(const std::string& path, bool skip_bad,
                  const std::function<void(const nlohmann::json&, size_t line)>& parse_record) {
  std::ifstream file(path, std::ios::binary);
  require(file.good(), path + ": cannot open file");
  std::error_code ec;
  require(!std::filesystem::is_directory(path, ec), path + ": is a directory, expected a JSONL file");
  std::string line;
  size_t line_number = 0, good = 0, bad = 0, nonblank = 0;
  bool too_long = false;
  BoundedLineReader reader(file);
  while (reader.next(&line, kJsonlLineMaxBytes, &too_long)) {
    line_number++;
    std::string problem;
    if (too_long) {
      nonblank++;
      problem = "line longer than " + std::to_string(kJsonlLineMaxBytes / kMiB) +
                " MiB (the limit for a JSONL line)";
    } else {
      if (!line.empty() && line.back() == '\r') line.pop_back();  // CRLF files
      if (line.find_first_not_of(" \t") == std::string::npos) continue;
      nonblank++;
      try {
        nlohmann::json value;
        size_t byte = 0;
        if (!parse_json_bounded(line, &value, &problem, &byte)) {
          if (problem != json_depth_problem()) problem = "invalid JSON at byte " + std::to_string(byte);
        } else {
          parse_record(value, line_number);
          good++;
          continue;
        }
      } catch (const nlohmann::json::exception& e) {  // a wrong type the record check missed
        problem = std::string("bad record: ") + one_line(e.what());
      } catch (const Error& e) {
        problem = e.what();
      }
    }
    if (!skip_bad) throw Error(path + ":" + std::to_string(line_number) + ": " + problem);
    bad++;
  }
  require(nonblank > 0, path + ": empty file (no JSON lines)");
  require(good > 0, path + ": no valid records (" + std::to_string(bad) + " bad lines skipped)");
  return bad;
}

}  // namespace polaris
