// Errors: bad input ends in one line naming the file or flag and the problem.
//
// Library code throws polaris::Error with that line; every program's main goes
// through run_main (src/common/cli.h), which prints "error: <line>" to stderr
// and exits 1. Nothing half-written is left behind: writers go to "<path>.tmp"
// and rename at the end (see write_file_atomically).
#pragma once
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

}  // namespace polaris
