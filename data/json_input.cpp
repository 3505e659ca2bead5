// Bounded JSON input (see json_input.h).
#include "data/json_input.h"

#include <sys/stat.h>

#include <cstdio>
#include <memory>

#include "src/common/error.h"

namespace polaris {

namespace {

struct TooDeep {};

std::string mib(uint64_t bytes) {
  return bytes % kMiB == 0 ? std::to_string(bytes / kMiB) + " MiB"
                           : std::to_string(bytes) + " bytes";
}

}  // namespace

std::string json_depth_problem(int max_depth) {
  return "nested deeper than " + std::to_string(max_depth) + " levels (the JSON nesting limit)";
}

std::string json_size_problem(uint64_t bytes, uint64_t max_bytes, const std::string& kind) {
  return std::to_string(bytes) + " bytes, over the " + mib(max_bytes) + " limit for " + kind;
}

bool parse_json_bounded(const std::string& text, nlohmann::json* out, std::string* problem,
                        size_t* error_byte, int max_depth) {
  using event = nlohmann::json::parse_event_t;
  // depth: the number of containers open around the one starting (0 at the top).
  auto limit = [max_depth](int depth, event e, nlohmann::json&) {
    if ((e == event::object_start || e == event::array_start) && depth >= max_depth)
      throw TooDeep{};
    return true;
  };
  if (error_byte) *error_byte = 0;
  try {
    *out = nlohmann::json::parse(text, limit);
    return true;
  } catch (const TooDeep&) {
    *problem = json_depth_problem(max_depth);
  } catch (const nlohmann::json::parse_error& e) {
    *problem = one_line(e.what());
    if (error_byte) *error_byte = e.byte;
  } catch (const nlohmann::json::exception& e) {
    *problem = one_line(e.what());
  }
  *out = nlohmann::json();
  return false;
}

nlohmann::json parse_json_or_throw(const std::string& text, const std::string& where,
                                   const std::string& malformed) {
  nlohmann::json value;
  std::string problem;
  if (parse_json_bounded(text, &value, &problem)) return value;
  if (problem == json_depth_problem()) throw Error(where + ": " + problem);
  throw Error(where + ": " + malformed + ": " + problem);
}

std::string read_text_file_bounded(const std::string& path, uint64_t max_bytes,
                                   const std::string& kind) {
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> f(std::fopen(path.c_str(), "rb"), std::fclose);
  if (!f) throw Error(path + ": cannot open: " + errno_text());
  struct stat st;
  if (::fstat(fileno(f.get()), &st) != 0) throw Error(path + ": cannot stat: " + errno_text());
  if (S_ISDIR(st.st_mode)) throw Error(path + ": is a directory, expected " + kind);
  const uint64_t size = uint64_t(st.st_size);
  if (size > max_bytes) throw Error(path + ": " + json_size_problem(size, max_bytes, kind));
  std::string text;
  // A pipe or special file reports size 0: read up to the limit (plus one byte to detect more).
  char buffer[1 << 16];
  size_t n;
  while ((n = std::fread(buffer, 1, sizeof(buffer), f.get())) > 0) {
    text.append(buffer, n);
    if (text.size() > max_bytes)
      throw Error(path + ": more than " + mib(max_bytes) + ", the limit for " + kind);
  }
  if (std::ferror(f.get())) throw Error(path + ": read failed: " + errno_text());
  return text;
}

nlohmann::json read_json_file(const std::string& path, uint64_t max_bytes, const std::string& kind,
                              const std::string& malformed) {
  return parse_json_or_throw(read_text_file_bounded(path, max_bytes, kind), path, malformed);
}

}  // namespace polaris
