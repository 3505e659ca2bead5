// Shared pieces of the fuzz targets (target.h).
#include "fuzz/target.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <cstring>

#include "data/tokenizer.h"
#include "src/common/error.h"

namespace polaris::fuzz {

namespace {

std::vector<Target>& registry() {
  static std::vector<Target> targets;
  return targets;
}

[[noreturn]] void die(const std::string& message) {
  std::fprintf(stderr, "fuzz: %s\n", message.c_str());
  std::abort();
}

}  // namespace

TargetRegistration::TargetRegistration(const char* name, TargetFunction run) {
  registry().push_back({name, run});
}

std::vector<Target> registered_targets() {
  std::vector<Target> targets = registry();
  std::sort(targets.begin(), targets.end(),
            [](const Target& a, const Target& b) { return a.name < b.name; });
  return targets;
}

MemoryFile::MemoryFile(const void* data, size_t size) {
  fd_ = memfd_create("polaris_fuzz", MFD_CLOEXEC);
  if (fd_ < 0) die(std::string("memfd_create: ") + std::strerror(errno));
  const char* bytes = static_cast<const char*>(data);
  for (size_t done = 0; done < size;) {
    const ssize_t n = ::write(fd_, bytes + done, size - done);
    if (n <= 0) die(std::string("writing a memfd: ") + std::strerror(errno));
    done += size_t(n);
  }
  path_ = "/proc/self/fd/" + std::to_string(fd_);
}

MemoryFile::~MemoryFile() { ::close(fd_); }

std::pair<std::string, std::string> split_at_nul(const uint8_t* data, size_t size) {
  const uint8_t* nul = static_cast<const uint8_t*>(std::memchr(data, 0, size));
  if (!nul) return {std::string(reinterpret_cast<const char*>(data), size), ""};
  return {std::string(reinterpret_cast<const char*>(data), size_t(nul - data)),
          std::string(reinterpret_cast<const char*>(nul + 1), size_t(data + size - nul - 1))};
}

const Tokenizer& fixture_tokenizer() {
  static const Tokenizer tokenizer = [] {
    const char* path = "tests/fixtures/qwen3_tokenizer/tokenizer.json";
    try {
      return Tokenizer::load(path);
    } catch (const Error& e) {
      die(std::string("the fixture tokenizer (run from the repository root): ") + e.what());
    }
  }();
  return tokenizer;
}

#ifdef POLARIS_LIBFUZZER
// libFuzzer calls this once before any input: reading the 11 MB fixture
// tokenizer here keeps it out of the first input's time (-timeout).
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  fixture_tokenizer();
  return 0;
}
#endif

double thread_cpu_seconds() {
  timespec t{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return double(t.tv_sec) + 1e-9 * double(t.tv_nsec);
}

}  // namespace polaris::fuzz
