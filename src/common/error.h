// Errors: bad input ends in one line naming the file or flag and the problem.
//
// Library code throws polaris::Error with that line; every program's main goes
// through run_main (src/common/cli.h), which prints "error: <line>" to stderr
// and exits 1. Nothing half-written is left behind: writers go to "<path>.tmp"
// and rename at the end (see AtomicFile in model/safetensors.h).
#pragma once
#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>

namespace polaris {

struct Error : std::runtime_error {
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

// Throws Error(message) when condition is false.
inline void require(bool condition, const std::string& message) {
  if (!condition) throw Error(message);
}

// `s` with line breaks turned into spaces, so a library's multi-line message
// (nlohmann::json's, ...) fits the one-line error convention.
inline std::string one_line(std::string s) {
  for (char& c : s)
    if (c == '\n' || c == '\r') c = ' ';
  return s;
}

// strerror(errno) as a string: read it right after the failing call.
inline std::string errno_text() { return std::strerror(errno); }

}  // namespace polaris
