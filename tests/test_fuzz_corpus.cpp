// The fuzzing regression corpus, replayed on every `make test` without clang.
//
// Each file of tests/fuzz_corpus/<target>/ (the seeds, plus every input
// `make fuzz` found that once crashed, hung or broke a property, minimised)
// goes through its target: the same fuzz/fuzz_<target>.cpp function libFuzzer
// runs, compiled here by g++. Every input must return or throw polaris::Error
// (a refusal) within kSecondsPerInput; any other exception is a finding, and a
// crash or a hang (a watchdog ends the process naming the file) fails the run.
#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <set>
#include <thread>

#include "fuzz/target.h"
#include "src/common/error.h"

using namespace polaris;
namespace fs = std::filesystem;

namespace {

const char* const kCorpusDir = "tests/fuzz_corpus";
// Far above any seed (milliseconds); a hang or a quadratic blow-up passes it.
constexpr double kSecondsPerInput = 10.0;

enum class Outcome { Accepted, Refused, Finding };

struct Replay {
  Outcome outcome = Outcome::Accepted;
  std::string detail;  // the Error or the finding
  double seconds = 0;
};

// Ends the process, naming the input, when one runs past the limit: a hang
// would otherwise stall `make test` forever.
class Watchdog {
 public:
  Watchdog(std::string label, double seconds) : label_(std::move(label)) {
    thread_ = std::thread([this, seconds] {
      std::unique_lock<std::mutex> lock(mutex_);
      if (!done_cv_.wait_for(lock, std::chrono::duration<double>(seconds), [this] { return done_; })) {
        std::fprintf(stderr, "fuzz corpus: %s still running after %.0f s (a hang)\n", label_.c_str(), seconds);
        std::_Exit(1);
      }
    });
  }
  ~Watchdog() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      done_ = true;
    }
    done_cv_.notify_one();
    thread_.join();
  }

 private:
  std::string label_;
  std::mutex mutex_;
  std::condition_variable done_cv_;
  bool done_ = false;
  std::thread thread_;
};

Replay replay(fuzz::TargetFunction run, const std::string& bytes, const std::string& label) {
  Watchdog watchdog(label, kSecondsPerInput);
  Replay result;
  const auto start = std::chrono::steady_clock::now();
  try {
    run(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  } catch (const Error& e) {
    result.outcome = Outcome::Refused;
    result.detail = e.what();
  } catch (const std::exception& e) {
    result.outcome = Outcome::Finding;
    result.detail = e.what();
  } catch (...) {
    result.outcome = Outcome::Finding;
    result.detail = "a non-standard exception";
  }
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
}

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

std::vector<fs::path> sorted_files(const fs::path& dir) {
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(dir))
    if (entry.is_regular_file()) files.push_back(entry.path());
  std::sort(files.begin(), files.end());
  return files;
}

}  // namespace

// Every fuzz/fuzz_*.cpp registered its target, each target has a corpus
// directory, and each corpus directory belongs to a target.
TEST(FuzzCorpus, EveryTargetHasACorpus) {
  std::set<std::string> sources, registered, corpora;
  for (const auto& entry : fs::directory_iterator("fuzz")) {
    const std::string name = entry.path().filename().string();
    if (name.rfind("fuzz_", 0) == 0 && entry.path().extension() == ".cpp")
      sources.insert(name.substr(5, name.size() - 9));
  }
  for (const fuzz::Target& target : fuzz::registered_targets()) registered.insert(target.name);
  for (const auto& entry : fs::directory_iterator(kCorpusDir))
    if (entry.is_directory()) corpora.insert(entry.path().filename().string());
  EXPECT_GE(registered.size(), 10u);
  EXPECT_EQ(sources, registered) << "each fuzz/fuzz_<name>.cpp registers the target <name>";
  EXPECT_EQ(corpora, registered) << "each target has tests/fuzz_corpus/<name>/, and only those";
}

// The replay itself: every input of every target ends cleanly and in time,
// and each target has at least one input its parser accepts (seeds that reach
// past the first check) and, where it refuses anything, the refusal is one line.
TEST(FuzzCorpus, EveryInputEndsCleanly) {
  fuzz::fixture_tokenizer();  // read once, outside any input's time
  size_t total = 0;
  for (const fuzz::Target& target : fuzz::registered_targets()) {
    const fs::path dir = fs::path(kCorpusDir) / target.name;
    if (!fs::is_directory(dir)) continue;  // EveryTargetHasACorpus reports it
    size_t accepted = 0, refused = 0;
    for (const fs::path& file : sorted_files(dir)) {
      SCOPED_TRACE(file.string());
      const Replay r = replay(target.run, read_file(file), file.string());
      EXPECT_NE(r.outcome, Outcome::Finding) << r.detail;
      EXPECT_LT(r.seconds, kSecondsPerInput);
      if (r.outcome == Outcome::Refused) {
        EXPECT_EQ(r.detail.find('\n'), std::string::npos) << "not one line: " << r.detail;
      }
      accepted += r.outcome == Outcome::Accepted;
      refused += r.outcome == Outcome::Refused;
      ++total;
    }
    EXPECT_GE(accepted, 1u) << target.name << ": no corpus input gets past the parser's checks";
    std::printf("  %-18s %3zu accepted, %3zu refused\n", target.name.c_str(), accepted, refused);
  }
  EXPECT_GT(total, 0u);
}

// Negative control: the replay tells the three outcomes apart, so a target
// that throws anything but Error (a FuzzFinding such as a verifier over its
// cost bound, or a library bug's std::out_of_range) fails the test above.
TEST(FuzzCorpus, ReplayTellsFindingsFromRefusals) {
  const std::string bytes = "x";
  auto accepts = [](const uint8_t*, size_t) {};
  auto refuses = [](const uint8_t*, size_t) { throw Error("f: refused"); };
  auto finds = [](const uint8_t*, size_t) { throw fuzz::FuzzFinding("property broken"); };
  auto out_of_range = [](const uint8_t*, size_t) { std::string().at(1); };
  EXPECT_EQ(replay(accepts, bytes, "accepts").outcome, Outcome::Accepted);
  EXPECT_EQ(replay(refuses, bytes, "refuses").outcome, Outcome::Refused);
  EXPECT_EQ(replay(finds, bytes, "finds").outcome, Outcome::Finding);
  EXPECT_EQ(replay(out_of_range, bytes, "out_of_range").outcome, Outcome::Finding);
}

// split_at_nul, which every two-part target relies on.
TEST(FuzzCorpus, SplitAtNul) {
  const std::string both("ab\0cd\0e", 7);
  const auto [a, b] = fuzz::split_at_nul(reinterpret_cast<const uint8_t*>(both.data()), both.size());
  EXPECT_EQ(a, "ab");
  EXPECT_EQ(b, std::string("cd\0e", 4));
  const auto [c, d] = fuzz::split_at_nul(reinterpret_cast<const uint8_t*>("xyz"), 3);
  EXPECT_EQ(c, "xyz");
  EXPECT_EQ(d, "");
}
