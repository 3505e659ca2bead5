// Fuzz targets: one function per parser, fed arbitrary bytes.
//
// Each fuzz/fuzz_<name>.cpp defines one target with POLARIS_FUZZ_TARGET. The
// same function is built twice:
//   - by `make fuzz` (clang, AddressSanitizer + UndefinedBehaviorSanitizer),
//     linked with libFuzzer into build/fuzz/fuzz_<name>, which mutates inputs
//     for FUZZ_SECONDS;
//   - by the normal build (g++) into build/tests/test_fuzz_corpus, which replays
//     every file of tests/fuzz_corpus/<name>/ on each `make test`.
// A target passes an input when it returns or throws polaris::Error (a parser
// refusing bad input with one line is the promise). Anything else is a
// finding: another exception (FuzzFinding for a broken property, such as a
// verifier over its cost bound), a crash, a sanitizer report, a hang, or an
// allocation over libFuzzer's -malloc_limit_mb.
#pragma once
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace polaris {
class Tokenizer;
}

namespace polaris::fuzz {

using TargetFunction = void (*)(const uint8_t* data, size_t size);

struct Target {
  std::string name;  // tests/fuzz_corpus/<name>/, build/fuzz/fuzz_<name>
  TargetFunction run;
};

// Every target linked into this program, sorted by name.
std::vector<Target> registered_targets();

// Added to the registry by POLARIS_FUZZ_TARGET (a static object per target).
struct TargetRegistration {
  TargetRegistration(const char* name, TargetFunction run);
};

// A property of the library broken by an input (not a parser refusing it).
struct FuzzFinding : std::logic_error {
  explicit FuzzFinding(const std::string& what) : std::logic_error(what) {}
};

// The bytes as a file that the parsers open by path: an anonymous in-memory
// file (memfd), named /proc/self/fd/N, gone when this object is. Parsers that
// only take paths read it exactly as they read a file on disk.
class MemoryFile {
 public:
  MemoryFile(const void* data, size_t size);
  ~MemoryFile();
  MemoryFile(const MemoryFile&) = delete;
  MemoryFile& operator=(const MemoryFile&) = delete;
  const std::string& path() const { return path_; }

 private:
  int fd_ = -1;
  std::string path_;
};

// Two inputs in one: the bytes before the first NUL and those after it (all
// of them and "" when there is no NUL). JSON and prompts never hold a raw NUL.
std::pair<std::string, std::string> split_at_nul(const uint8_t* data, size_t size);

// The Qwen3 tokenizer of tests/fixtures (read once; the programs run from the
// repository root). Aborts with a message when it cannot be read: fuzzing
// without it would test nothing.
const Tokenizer& fixture_tokenizer();

// CPU seconds this thread has used (load on other cores does not count).
double thread_cpu_seconds();

}  // namespace polaris::fuzz

// Used inside namespace polaris::fuzz, after the function. Defines the
// registry entry and, in the libFuzzer build, the entry point
// libFuzzer calls. polaris::Error is caught there: refusing is passing.
#ifdef POLARIS_LIBFUZZER
#include "src/common/error.h"
#define POLARIS_FUZZ_LIBFUZZER_ENTRY(function)                                  \
  extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {     \
    try {                                                                       \
      function(data, size);                                                     \
    } catch (const polaris::Error&) {                                           \
    }                                                                           \
    return 0;                                                                   \
  }
#else
#define POLARIS_FUZZ_LIBFUZZER_ENTRY(function)
#endif

#define POLARIS_FUZZ_TARGET(name, function)                                      \
  static const polaris::fuzz::TargetRegistration registration_##function(name, function); \
  POLARIS_FUZZ_LIBFUZZER_ENTRY(function)
