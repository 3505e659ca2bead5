// Tokenizer throughput: MB/s of UTF-8 input encoded, for each tokenizer given.
//
// The input is generated here (deterministic): ~4 MB of documents mixing English
// prose, Python-like code and Korean, each a few KB, like a pre-training corpus.
// Reported per tokenizer:
//   load time;
//   1 thread, cold cache (word cache emptied first: every new word runs BPE);
//   1 thread, warm cache (the same text again: repeated words are lookups);
//   all threads (encode_batch), cold: MB/s of wall time, and per core.
// "Per core" divides by CPU time (not wall time), so it stays meaningful on a
// machine shared with other jobs; the wall-clock figure is printed beside it.
// Beside each figure: Hugging Face `tokenizers` (the Rust library, through
// its Node binding) on the same documents, from src/bench/tokenizer_reference.js,
// with a check that both produced the same ids. `make bench` installs the
// npm module into build/npm; without node or the module only ours print.
//
//   bench_tokenizer [QWEN3_JSON] [DEEPSEEK_V3_JSON] [--reference-modules DIR]
#include <time.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "data/tokenizer.h"
#include "src/common/cli.h"
#include "src/common/error.h"

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

double cpu_seconds(clockid_t clock) {  // CLOCK_THREAD_CPUTIME_ID or CLOCK_PROCESS_CPUTIME_ID
  timespec t;
  clock_gettime(clock, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

// Times body: wall seconds and CPU seconds of the given clock.
template <typename F>
std::pair<double, double> timed(clockid_t clock, F body) {
  auto start = Clock::now();
  double cpu_start = cpu_seconds(clock);
  body();
  return {seconds_since(start), cpu_seconds(clock) - cpu_start};
}

std::vector<std::string> generate_documents(size_t total_bytes) {
  static const char* english[] = {
      "the", "model", "learns", "to", "predict", "next", "token", "and", "a", "of", "in",
      "training", "data", "is", "large", "language", "reasoning", "with", "for", "we",
      "gradient", "descent", "optimizer", "update", "step", "batch", "Paris", "London",
      "however,", "because", "which", "their", "between", "through", "experiment", "result.",
      "It's", "don't", "(see", "below)", "1990s", "3.14", "42", "--", "\"quoted\"", "e.g."};
  static const char* korean[] = {"안녕하세요", "세계", "모델은", "다음", "토큰을", "예측합니다",
                                 "학습", "데이터", "언어", "그리고", "하지만", "우리는", "실험"};
  static const char* code_lines[] = {
      "def forward(self, x):\n", "    return self.linear(x) + bias\n",
      "for i in range(n):\n", "        total += values[i] * weights[i]\n",
      "if (ptr == nullptr) { return -1; }\n", "\tstd::vector<int> ids = tokenizer.encode(text);\n",
      "    # compute the loss\n", "x = torch.zeros((B, T, C), dtype=torch.float32)\n",
      "}\n", "\n", "    print(f\"step {step}: loss={loss:.4f}\")\n"};
  std::mt19937 rng(1234);
  auto pick = [&](size_t n) { return static_cast<size_t>(rng() % n); };
  std::vector<std::string> docs;
  size_t bytes = 0;
  while (bytes < total_bytes) {
    std::string doc;
    size_t target = 1000 + pick(6000);
    int kind = static_cast<int>(pick(3));
    while (doc.size() < target) {
      if (pick(10) == 0) {  // a made-up word or identifier: keeps the word cache honest
        std::string word(3 + pick(8), 'a');
        for (char& c : word) c = static_cast<char>('a' + pick(26));
        doc += word + (pick(2) ? " " : "_");
      } else if (kind == 0) {  // English prose
        doc += english[pick(sizeof(english) / sizeof(*english))];
        doc += pick(12) == 0 ? ".\n" : " ";
      } else if (kind == 1) {  // code
        doc += code_lines[pick(sizeof(code_lines) / sizeof(*code_lines))];
      } else {  // Korean with some punctuation and numbers
        doc += korean[pick(sizeof(korean) / sizeof(*korean))];
        doc += pick(8) == 0 ? ", " : (pick(20) == 0 ? std::to_string(pick(1000)) + ". " : " ");
      }
    }
    bytes += doc.size();
    docs.push_back(std::move(doc));
  }
  return docs;
}

// One tokenizer's figures; the same fields src/bench/tokenizer_reference.js
// prints for Hugging Face tokenizers, so the two sit side by side.
struct Figures {
  std::string version;
  double load_s = 0;
  size_t tokens = 0;
  uint32_t id_hash = 0x811c9dc5;  // FNV-1a over every id, in order
  double cold_per_core = 0, cold_wall = 0, warm_per_core = 0, warm_wall = 0;
  double batch_per_core = 0, batch_wall = 0;
};

Figures measure_polaris(const std::string& path, const std::vector<std::string>& docs,
                        double megabytes, int threads) {
  Figures f;
  auto start = Clock::now();
  polaris::Tokenizer tokenizer = polaris::Tokenizer::load(path);
  f.load_s = seconds_since(start);
  tokenizer.clear_cache();
  auto cold = timed(CLOCK_THREAD_CPUTIME_ID, [&] {
    for (const std::string& doc : docs)
      for (int32_t id : tokenizer.encode(doc)) {
        f.id_hash = (f.id_hash ^ uint32_t(id)) * 0x01000193u;
        ++f.tokens;
      }
  });
  auto warm = timed(CLOCK_THREAD_CPUTIME_ID, [&] {
    for (const std::string& doc : docs) tokenizer.encode(doc);
  });
  tokenizer.clear_cache();
  auto batch = timed(CLOCK_PROCESS_CPUTIME_ID, [&] { tokenizer.encode_batch(docs, threads); });
  f.cold_per_core = megabytes / cold.second, f.cold_wall = megabytes / cold.first;
  f.warm_per_core = megabytes / warm.second, f.warm_wall = megabytes / warm.first;
  f.batch_per_core = megabytes / batch.second, f.batch_wall = megabytes / batch.first;
  return f;
}

// Runs tokenizer_reference.js under node; nullopt (and why) when node or the
// npm module is missing or the script fails.
std::optional<Figures> measure_reference(const std::string& path, const std::string& corpus,
                                         const std::string& node_modules, std::string* why) {
  if (std::system("command -v node >/dev/null 2>&1") != 0) {
    *why = "node is not installed";
    return std::nullopt;
  }
  if (access((node_modules + "/tokenizers/package.json").c_str(), R_OK) != 0) {
    *why = node_modules + "/tokenizers is missing (make bench installs it with npm)";
    return std::nullopt;
  }
  const std::string command = "NODE_PATH='" + node_modules +
                              "' node src/bench/tokenizer_reference.js '" + path + "' '" + corpus +
                              "' 2>&1";
  std::FILE* pipe = popen(command.c_str(), "r");
  if (!pipe) {
    *why = "cannot start node";
    return std::nullopt;
  }
  std::string output;
  char buffer[4096];
  while (size_t n = std::fread(buffer, 1, sizeof(buffer), pipe)) output.append(buffer, n);
  const int status = pclose(pipe);
  nlohmann::json j = nlohmann::json::parse(output, nullptr, /*allow_exceptions=*/false);
  if (status != 0 || !j.is_object()) {
    *why = "tokenizer_reference.js failed: " + polaris::one_line(output);
    return std::nullopt;
  }
  Figures f;
  f.version = j["version"];
  f.load_s = j["load_s"], f.tokens = j["tokens"], f.id_hash = j["id_hash"];
  f.cold_per_core = j["cold_per_core"], f.cold_wall = j["cold_wall"];
  f.warm_per_core = j["warm_per_core"], f.warm_wall = j["warm_wall"];
  f.batch_per_core = j["batch_per_core"], f.batch_wall = j["batch_wall"];
  return f;
}

// Prints ours beside the reference's; false when the two disagree on the ids.
bool report(const std::string& path, const Figures& ours, const std::optional<Figures>& reference,
            const std::string& why_no_reference, double megabytes, int threads) {
  std::printf("%s: %zu tokens, %.2f bytes/token\n", path.c_str(), ours.tokens,
              megabytes * 1e6 / ours.tokens);
  const std::string reference_name =
      "HF tokenizers" + (reference ? " " + reference->version : std::string());
  std::printf("  %-38s %16s %22s\n", "", "Polaris", reference_name.c_str());
  auto row = [&](const char* name, double mine, double theirs, const char* format) {
    char a[32], b[32] = "-";
    std::snprintf(a, sizeof(a), format, mine);
    if (reference) std::snprintf(b, sizeof(b), format, theirs);
    std::printf("  %-38s %16s %22s\n", name, a, b);
  };
  const Figures& r = reference ? *reference : ours;
  row("load (s)", ours.load_s, r.load_s, "%.2f");
  row("1 thread, cold cache, MB/s per core", ours.cold_per_core, r.cold_per_core, "%.1f");
  row("1 thread, cold cache, MB/s wall", ours.cold_wall, r.cold_wall, "%.1f");
  row("1 thread, warm cache, MB/s per core", ours.warm_per_core, r.warm_per_core, "%.1f");
  const std::string batch = "batch (" + std::to_string(threads) + " threads), MB/s per core";
  row(batch.c_str(), ours.batch_per_core, r.batch_per_core, "%.1f");
  row("batch, MB/s wall", ours.batch_wall, r.batch_wall, "%.1f");
  if (!reference) {
    std::printf("  reference not run: %s\n", why_no_reference.c_str());
    return true;
  }
  const bool same = ours.tokens == reference->tokens && ours.id_hash == reference->id_hash;
  std::printf("  ids: %s (%zu vs %zu tokens)\n",
              same ? "identical to the reference" : "DIFFERENT from the reference", ours.tokens,
              reference->tokens);
  return same;
}

// The documents as JSONL ({"text": ...} per line) for the reference script.
std::string write_corpus(const std::vector<std::string>& docs) {
  char path[] = "/tmp/polaris_bench_tokenizer_XXXXXX";
  const int fd = mkstemp(path);
  polaris::require(fd >= 0, std::string("cannot create a temporary file in /tmp: ") +
                                polaris::errno_text());
  close(fd);
  std::ofstream out(path);
  for (const std::string& doc : docs) out << nlohmann::json{{"text", doc}}.dump() << "\n";
  polaris::require(bool(out.flush()), std::string(path) + ": write failed");
  return path;
}

}  // namespace

int main(int argc, char** argv) {
  return polaris::run_main([&]() {
    static const std::vector<polaris::FlagSpec> kFlags = {
        {"reference-modules", polaris::FlagType::text, "DIR", "build/npm/node_modules",
         "where the reference tokenizer's npm modules are"}};
    const polaris::Flags flags(argc, argv, kFlags);
    std::vector<std::string> paths = {"tests/fixtures/qwen3_tokenizer/tokenizer.json",
                                      "tests/fixtures/deepseek_v3_tokenizer/tokenizer.json"};
    for (size_t i = 0; i < flags.positional().size() && i < paths.size(); ++i)
      paths[i] = flags.positional()[i];
    const std::string node_modules = flags.text("reference-modules");
    std::vector<std::string> docs = generate_documents(4 << 20);
    size_t bytes = 0;
    for (const std::string& d : docs) bytes += d.size();
    const double megabytes = bytes / 1e6;
    const int threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    std::printf("input: %zu documents, %.1f MB of mixed English / code / Korean\n", docs.size(),
                megabytes);
    const std::string corpus = write_corpus(docs);
    bool all_same = true;
    for (const std::string& path : paths) {
      const Figures ours = measure_polaris(path, docs, megabytes, threads);
      std::string why;
      const std::optional<Figures> reference = measure_reference(path, corpus, node_modules, &why);
      all_same = report(path, ours, reference, why, megabytes, threads) && all_same;
    }
    std::remove(corpus.c_str());
    return all_same ? 0 : 1;
  });
}
