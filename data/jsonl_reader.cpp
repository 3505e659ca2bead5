// JSONL reading (see jsonl_reader.h).
#include "data/jsonl_reader.h"

#include <fstream>

#include "src/common/error.h"

namespace polaris {

size_t read_jsonl(const std::string& path, bool skip_bad,
                  const std::function<void(const nlohmann::json&, size_t line)>& parse_record) {
  std::ifstream file(path, std::ios::binary);
  require(file.good(), path + ": cannot open file");
  std::string line;
  size_t line_number = 0, good = 0, bad = 0, nonblank = 0;
  while (std::getline(file, line)) {
    line_number++;
    if (!line.empty() && line.back() == '\r') line.pop_back();  // CRLF files
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    nonblank++;
    std::string problem;
    try {
      nlohmann::json value = nlohmann::json::parse(line);
      parse_record(value, line_number);
      good++;
      continue;
    } catch (const nlohmann::json::parse_error& e) {
      problem = "invalid JSON at byte " + std::to_string(e.byte);
    } catch (const nlohmann::json::exception& e) {  // a wrong type the record check missed
      problem = std::string("bad record: ") + e.what();
    } catch (const Error& e) {
      problem = e.what();
    }
    if (!skip_bad) throw Error(path + ":" + std::to_string(line_number) + ": " + problem);
    bad++;
  }
  require(nonblank > 0, path + ": empty file (no JSON lines)");
  require(good > 0, path + ": no valid records (" + std::to_string(bad) + " bad lines skipped)");
  return bad;
}

}  // namespace polaris
