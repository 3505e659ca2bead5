// Tokenizer throughput: MB/s of UTF-8 input encoded, for each tokenizer given.
//
//   bench_tokenizer [QWEN3_TOKENIZER_JSON] [DEEPSEEK_V3_TOKENIZER_JSON]
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
// The reference for these numbers is Hugging Face `tokenizers` on the same
// kind of text (see run/ for the comparison script); here we print our own.
#include <time.h>

#include <chrono>
#include <cstdio>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "data/tokenizer.h"
#include "src/common/cli.h"

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

void bench_one(const std::string& path, const std::vector<std::string>& docs, double megabytes) {
  auto start = Clock::now();
  polaris::Tokenizer tokenizer = polaris::Tokenizer::load(path);
  std::printf("%s\n  load                      %.2f s (vocab %d)\n", path.c_str(), seconds_since(start),
              tokenizer.vocab_size());

  size_t tokens = 0;
  tokenizer.clear_cache();
  auto cold = timed(CLOCK_THREAD_CPUTIME_ID, [&] {
    for (const std::string& doc : docs) tokens += tokenizer.encode(doc).size();
  });
  auto warm = timed(CLOCK_THREAD_CPUTIME_ID, [&] {
    for (const std::string& doc : docs) tokenizer.encode(doc);
  });
  int threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  tokenizer.clear_cache();
  auto multi = timed(CLOCK_PROCESS_CPUTIME_ID, [&] { tokenizer.encode_batch(docs, threads); });

  std::printf("  %zu tokens, %.2f bytes/token\n", tokens, megabytes * 1e6 / tokens);
  std::printf("  1 thread, cold cache      %7.1f MB/s per core   (wall: %.1f MB/s)\n",
              megabytes / cold.second, megabytes / cold.first);
  std::printf("  1 thread, warm cache      %7.1f MB/s per core   (wall: %.1f MB/s)\n",
              megabytes / warm.second, megabytes / warm.first);
  std::printf("  %2d threads, cold cache    %7.1f MB/s per core   (wall: %.1f MB/s in total)\n", threads,
              megabytes / multi.second, megabytes / multi.first);
}

}  // namespace

int main(int argc, char** argv) {
  return polaris::run_main([&]() {
    polaris::Flags flags(argc, argv, {}, {});
    std::vector<std::string> paths = {"tests/fixtures/qwen3_tokenizer/tokenizer.json",
                                      "tests/fixtures/deepseek_v3_tokenizer/tokenizer.json"};
    for (size_t i = 0; i < flags.positional().size() && i < paths.size(); ++i)
      paths[i] = flags.positional()[i];
    std::vector<std::string> docs = generate_documents(4 << 20);
    size_t bytes = 0;
    for (const std::string& d : docs) bytes += d.size();
    std::printf("input: %zu documents, %.1f MB of mixed English / code / Korean\n", docs.size(),
                bytes / 1e6);
    for (const std::string& path : paths) bench_one(path, docs, bytes / 1e6);
    return 0;
  });
}
