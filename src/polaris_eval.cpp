// polaris_eval: evaluate a model on verifiable problems, and rejection-sample.
//
//   polaris_eval MODEL.bin --data problems.jsonl --tokenizer tokenizer.json [flags]
// (the flags: kFlags below, printed by --help)
//
// Every problem (data/rl_dataset.h: "problem"/"prompt" plus "answer", or
// Countdown's "numbers" + "target") is shown in the chat format and sampled K
// times; each response is scored by the verifier (src/train/jsonl_environment.h).
// --stop TEXT also ends a response once its text contains TEXT (the token
// that completes it is the response's last). All problems x K samples are
// decoded with continuous batching, --batch sequences at a time, the K
// samples of a problem sharing its prompt's cache (model/scheduler.h);
// sample j of problem p always draws from random stream p*K + j, so results do
// not depend on --batch.
//
// Summary on stdout:
//   avg@K    mean correctness over all samples
//   pass@1, pass@K   the unbiased estimator 1 - C(n-c, k)/C(n, k), averaged over problems
//   maj@K    the most frequent extracted answer (ties: first occurrence) is correct
//   mean response length (tokens) and how many responses ended on a stop token
// Progress on stderr. Output files (each written to PATH.tmp, renamed at the end):
//   --out           one JSON line per problem: {"index", "line", "prompt", "answer"
//                   (the reference), "samples": [{"response", "correct", "reward",
//                   "answer", "tokens", "stopped"}], "correct" (count), "pass_rate",
//                   "majority_answer", "majority_correct"}
//   --pass-rates    one line per problem {"line": L, "pass_rate": c/K}, L its line in
//                   --data: what polaris_train --mode grpo --pass-rates reads
//   --kept-problems with --drop-above X: the --data lines (verbatim) of the
//                   evaluated problems whose pass rate is at most X — Polaris's
//                   drop-easy step between training stages
//   --keep-correct  every verifier-approved sample as SFT JSONL
//                   {"prompt", "response"} (plus "system" with --system-prompt), the
//                   format --mode sft reads (data/sft_dataset.h): best-of-N data
//
// --temperature-sweep LO:HI:STEP (src/train/temperature_sweep.h) instead
// samples every problem K times at each temperature (the same random streams
// at each) and prints per temperature the accuracy (avg@K) and the diversity
// (distinct 4-grams across each problem's K completions), then the
// recommended temperature: the most diverse one whose accuracy is within
// --sweep-tolerance of the best. --sweep-out FILE gets the same as JSONL:
// {"temperature", "accuracy", "diversity", "response_len", "samples"} per
// temperature, then {"recommended_temperature", "tolerance", "rule"}.
#include <algorithm>
#include <fstream>
#include <chrono>
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "data/verifier.h"
#include "model/model_file.h"
#include "model/scheduler.h"
#include "model/transformer.h"
#include "src/common/backend.h"
#include "src/common/cli.h"
#include "src/common/sampling_flags.h"
#include "src/common/threads.h"
#include "src/common/metrics.h"
#include "src/train/eval_metrics.h"
#include "src/train/jsonl_environment.h"
#include "src/train/temperature_sweep.h"

using namespace polaris;
using json = nlohmann::json;

namespace {

using T = FlagType;
// Each flag once (README.md's polaris_eval table lists the same ones).
const std::vector<FlagSpec> kFlags = join_flags({{
    {"data", T::text, "FILE", "", "problems JSONL (required)"},
    {"tokenizer", T::text, "FILE", "", "tokenizer.json matching the model (required)"},
    {"samples", T::count, "K", "4", "answers sampled per problem"},
    {"temperature", T::number, "T", "0.6", "sampling temperature (0: greedy)"},
}, sampling_cut_flags(), {
    {"stop", T::text, "TEXT", "", "also end an answer once its text contains TEXT"},
    {"max-response", T::count, "N", "512", "tokens per answer"},
    {"seed", T::integer, "S", "1", "sample j of problem p draws from stream p*K + j"},
    {"batch", T::count, "N", "256", "sequences decoded together"},
    {"system-prompt", T::text, "TEXT", "", "a system message before each problem"},
    {"no-thinking", T::toggle, "", "", "the prompt pre-closes an empty think block"},
    {"limit", T::count, "N", "", "only the first N problems (default all)"},
    {"skip-bad", T::toggle, "", "", "skip and count malformed JSONL lines"},
    {"out", T::text, "FILE", "", "one JSON line per problem (answers, correctness)"},
    {"pass-rates", T::text, "FILE", "", "each problem's pass rate (for polaris_train --pass-rates)"},
    {"keep-correct", T::text, "FILE", "", "the verifier-approved answers as SFT JSONL"},
    {"drop-above", T::number, "X", "", "with --kept-problems: the pass-rate cut"},
    {"kept-problems", T::text, "FILE", "", "the --data lines of problems with pass rate <= X"},
    {"temperature-sweep", T::text, "LO:HI:STEP", "",
     "instead: accuracy and diversity at each temperature, and the recommended one"},
    {"sweep-tolerance", T::number, "X", "0.02",
     "the recommendation: the most diverse temperature within X of the best accuracy"},
    {"sweep-out", T::text, "FILE", "", "the temperature sweep as JSONL"},
    {"backend", T::text, "auto|cpu|cuda", "auto", "the ops"},
}, cuda_graphs_flags()});

std::string usage() {
  return "usage: polaris_eval MODEL.bin --data problems.jsonl --tokenizer tokenizer.json [flags]\n\n"
         "flags:\n" + describe_flags(kFlags);
}

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// An output file written to PATH.tmp and renamed by commit(); removed if never committed.
class AtomicFile {
 public:
  explicit AtomicFile(const std::string& path) : path_(path), tmp_(path + ".tmp") {
    file_ = std::fopen(tmp_.c_str(), "wb");
    require(file_ != nullptr, path_ + ": cannot open for writing");
  }
  ~AtomicFile() {
    if (file_) std::fclose(file_);
    if (!committed_) std::remove(tmp_.c_str());
  }
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;
  void line(const json& j) { raw_line(j.dump(-1, ' ', false, json::error_handler_t::replace)); }
  void raw_line(const std::string& text) {
    const std::string s = text + "\n";
    require(std::fwrite(s.data(), 1, s.size(), file_) == s.size(), path_ + ": write failed");
  }
  // Closes and checks the temporary file (rename() is separate, so every file is
  // complete before any is renamed).
  void close() {
    const bool ok = std::fclose(file_) == 0;
    file_ = nullptr;
    require(ok, path_ + ": write failed");
  }
  void rename() {
    require(std::rename(tmp_.c_str(), path_.c_str()) == 0, path_ + ": cannot rename " + tmp_);
    committed_ = true;
  }

 private:
  std::string path_, tmp_;
  std::FILE* file_ = nullptr;
  bool committed_ = false;
};

std::string fmt(const char* format, double v) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), format, v);
  return buf;
}

struct Sample {
  Completion completion;
  Score score;
  std::string text;
};

// P problems x K answers with `sp`, scored and decoded, progress on stderr.
// Sample j of problem p is sequence p*K + j everywhere: the random stream too.
// Whole problems per call: the K samples of a problem share its prompt's
// KV-cache blocks (generate_groups); --batch sequences decode at once.
std::vector<Sample> sample_problems(Transformer& model, JsonlEnvironment& env,
                                    const SamplingParams& sp, size_t P, int K, int batch) {
  const size_t total = P * size_t(K);
  std::vector<Sample> samples(total);
  const auto start = Clock::now();
  size_t generated_tokens = 0;
  const size_t chunk = std::max<size_t>(1, size_t(batch) / size_t(K)) * size_t(K);
  for (size_t begin = 0; begin < total; begin += chunk) {
    const size_t end = std::min(total, begin + chunk);
    std::vector<std::vector<int32_t>> prompts;
    for (size_t p = begin / K; p < end / K; ++p) prompts.push_back(env.prompt(Split::Train, p));
    std::vector<Completion> done = generate_groups(model, prompts, K, sp, /*first_index=*/begin);
    for (size_t s = begin; s < end; ++s) {
      Sample& sample = samples[s];
      sample.completion = std::move(done[s - begin]);
      generated_tokens += sample.completion.tokens.size();
      sample.score = env.score(Split::Train, s / K, sample.completion.tokens);
      sample.text = env.decode(sample.completion.tokens);
    }
    const double elapsed = seconds_since(start);
    const double rate = double(end) / std::max(elapsed, 1e-9);
    std::fprintf(stderr, "eval: %zu/%zu problems, %.1f samples/s, %.0f tokens/s, ETA %s\n",
                 end / K, P, rate, double(generated_tokens) / std::max(elapsed, 1e-9),
                 format_duration(double(total - end) / std::max(rate, 1e-9)).c_str());
  }
  return samples;
}

// --temperature-sweep: accuracy and diversity of P problems x K samples at
// each temperature (sp's other settings), the table on stdout, JSONL in `out`.
void temperature_sweep(Transformer& model, JsonlEnvironment& env, SamplingParams sp, size_t P,
                       int K, int batch, const std::vector<double>& temperatures,
                       double tolerance, AtomicFile* out) {
  std::vector<SweepPoint> points;
  std::printf("temperature  accuracy  diversity  response_len\n");
  for (double t : temperatures) {
    sp.temperature = float(t);
    const std::vector<Sample> samples = sample_problems(model, env, sp, P, K, batch);
    double correct = 0, length = 0;
    for (const Sample& sample : samples) {
      correct += sample.score.correct ? 1 : 0;
      length += double(sample.completion.tokens.size());
    }
    const double total = double(samples.size());
    double diversity = 0;
    for (size_t p = 0; p < P; ++p) {
      std::vector<std::vector<int32_t>> group;
      for (int j = 0; j < K; ++j) group.push_back(samples[p * K + size_t(j)].completion.tokens);
      diversity += distinct_ngram_ratio(group, kSweepNgram);
    }
    SweepPoint point{t, correct / total, diversity / double(P)};
    points.push_back(point);
    std::printf("%-11.4g  %-8.4f  %-9.4f  %.1f\n", t, point.accuracy, point.diversity,
                length / total);
    std::fflush(stdout);
    if (out)
      out->line({{"temperature", t},
                 {"accuracy", point.accuracy},
                 {"diversity", point.diversity},
                 {"response_len", length / total},
                 {"samples", samples.size()}});
  }
  const SweepPoint& pick = points[recommend_temperature(points, tolerance)];
  std::printf("recommended temperature %g (accuracy %.4f, diversity %.4f: the most diverse "
              "within %g of the best accuracy)\n",
              pick.temperature, pick.accuracy, pick.diversity, tolerance);
  if (out)
    out->line({{"recommended_temperature", pick.temperature},
               {"tolerance", tolerance},
               {"rule", "highest diversity with accuracy >= best - tolerance"}});
}

int run(int argc, char** argv) {
  if (wants_help(argc, argv)) {
    std::fputs(usage().c_str(), stdout);
    return 0;
  }
  const Flags flags(argc, argv, kFlags);
  const auto& pos = flags.positional();
  require(!pos.empty(), "no model file (usage: polaris_eval MODEL.bin --data problems.jsonl "
                        "--tokenizer tokenizer.json; --help lists the flags)");
  require(pos.size() == 1, "polaris_eval takes one model file, got also '" +
                               (pos.size() > 1 ? pos[1] : std::string()) + "'");
  const std::string model_path = pos[0];
  const std::string data_path = flags.required_text("data");
  const std::string tokenizer_path = flags.required_text("tokenizer");
  const int K = flags.count("samples");
  const double temperature = flags.number("temperature");
  require(temperature >= 0, "flag --temperature must be >= 0");
  const SamplingCuts cuts = read_sampling_cuts(flags);
  require(!flags.has("stop") || !flags.text("stop").empty(), "flag --stop is empty");
  const int max_response = flags.count("max-response");
  const int seed = flags.integer("seed");
  require(seed >= 0, "flag --seed must be >= 0");
  const int batch = flags.count("batch");
  const DecodeMode decode_mode = parse_cuda_graphs(flags.text("cuda-graphs"));
  const int limit = flags.has("limit") ? flags.count("limit") : 0;  // 0: all
  const std::string out_path = flags.text("out");
  const std::string pass_rates_path = flags.text("pass-rates");
  const std::string keep_path = flags.text("keep-correct");
  const std::string kept_problems_path = flags.text("kept-problems");
  require(flags.has("drop-above") == !kept_problems_path.empty(),
          "flag --drop-above and --kept-problems go together (the pass-rate cut and the file "
          "the remaining problems go to)");
  const double drop_above = flags.has("drop-above") ? flags.number("drop-above") : 1.0;
  require(drop_above >= 0 && drop_above <= 1, "flag --drop-above must be in [0, 1]");
  std::vector<double> sweep;  // --temperature-sweep: its temperatures
  if (flags.has("temperature-sweep")) {
    sweep = parse_temperature_sweep("temperature-sweep", flags.text("temperature-sweep"));
    for (const char* other : {"temperature", "out", "pass-rates", "keep-correct", "drop-above"})
      require(!flags.has(other), std::string("flag --") + other +
                                     " does not apply to --temperature-sweep");
  } else {
    for (const char* sweep_only : {"sweep-tolerance", "sweep-out"})
      require(!flags.has(sweep_only),
              std::string("flag --") + sweep_only + " needs --temperature-sweep");
  }
  const double sweep_tolerance = flags.number("sweep-tolerance");
  require(sweep_tolerance >= 0 && sweep_tolerance <= 1, "flag --sweep-tolerance must be in [0, 1]");
  const std::string sweep_out_path = flags.text("sweep-out");

  // Open the outputs first: a bad path fails before any sampling.
  std::unique_ptr<AtomicFile> out_file, rates_file, keep_file, kept_problems_file;
  if (!out_path.empty()) out_file = std::make_unique<AtomicFile>(out_path);
  if (!pass_rates_path.empty()) rates_file = std::make_unique<AtomicFile>(pass_rates_path);
  if (!keep_path.empty()) keep_file = std::make_unique<AtomicFile>(keep_path);
  if (!kept_problems_path.empty())
    kept_problems_file = std::make_unique<AtomicFile>(kept_problems_path);
  std::unique_ptr<AtomicFile> sweep_file;
  if (!sweep_out_path.empty()) sweep_file = std::make_unique<AtomicFile>(sweep_out_path);

  std::unique_ptr<Ops> ops = make_ops(flags.text("backend"));
  Tokenizer tokenizer = Tokenizer::load(tokenizer_path);
  JsonlEnvironmentOptions env_options;
  env_options.system_prompt = flags.text("system-prompt");
  env_options.enable_thinking = !flags.has("no-thinking");
  env_options.skip_bad = flags.has("skip-bad");
  JsonlEnvironment env(tokenizer, data_path, "", env_options);
  const size_t P = limit > 0 ? std::min(env.size(Split::Train), size_t(limit))
                             : env.size(Split::Train);

  LoadedModel loaded = read_model_bin(model_path);
  const ModelConfig config = loaded.config;
  const int V = config.vocab_size;
  for (size_t p = 0; p < P; ++p) {
    const std::vector<int32_t> ids = env.prompt(Split::Train, p);
    const size_t line = env.example(Split::Train, p).line;
    for (int32_t id : ids)
      require(id < V, data_path + ":" + std::to_string(line) + ": prompt token " +
                          std::to_string(id) + " is outside the model's vocabulary of " +
                          std::to_string(V) + " (" + tokenizer_path + " does not match " +
                          model_path + ")");
    require(int(ids.size()) + max_response <= config.context_limit(),
            data_path + ":" + std::to_string(line) + ": prompt of " + std::to_string(ids.size()) +
                " tokens plus --max-response " + std::to_string(max_response) +
                " exceeds the model's " + std::to_string(config.context_limit()) + " positions");
  }
  Transformer model(config, *ops);
  model.set_params(loaded.params);
  model.set_decode_mode(decode_mode);
  loaded.params = std::vector<float>();

  SamplingParams sp;
  sp.temperature = float(temperature);
  sp.top_p = cuts.top_p;
  sp.top_k = cuts.top_k;
  sp.min_p = cuts.min_p;
  if (flags.has("stop")) {
    sp.stop_strings.push_back(flags.text("stop"));
    // ids the tokenizer has no token for (a model's padded vocabulary) add no text
    sp.token_bytes = [&tokenizer](int32_t id) {
      return id < tokenizer.vocab_size() && !tokenizer.id_to_token(id).empty()
                 ? tokenizer.token_bytes(id)
                 : std::string();
    };
  }
  sp.max_new_tokens = max_response;
  sp.seed = uint64_t(seed);
  sp.max_batch = batch;
  for (int32_t t : env.stop_tokens())
    if (t < V) sp.stop_tokens.push_back(t);

  std::printf("polaris_eval: %s on %s: %zu problems x %d samples (temperature %g, top-p %g, "
              "max response %d, %s)\n",
              model_path.c_str(), data_path.c_str(), P, K, temperature, double(cuts.top_p),
              max_response, config.describe().c_str());
  std::fflush(stdout);
  if (!sweep.empty()) {
    temperature_sweep(model, env, sp, P, K, batch, sweep, sweep_tolerance, sweep_file.get());
    if (sweep_file) {
      sweep_file->close();
      sweep_file->rename();
      std::printf("wrote %s (%zu temperatures)\n", sweep_out_path.c_str(), sweep.size());
    }
    return 0;
  }

  const size_t total = P * size_t(K);
  const auto start = Clock::now();
  std::vector<Sample> samples = sample_problems(model, env, sp, P, K, batch);
  size_t generated_tokens = 0;
  for (const Sample& sample : samples) generated_tokens += sample.completion.tokens.size();
  const double elapsed = seconds_since(start);

  // Metrics and per-problem records.
  double sum_correct = 0, sum_pass1 = 0, sum_passk = 0, sum_maj = 0, sum_len = 0;
  size_t stopped = 0, format_ok = 0, kept = 0;
  std::vector<size_t> kept_lines;  // --kept-problems: --data lines to keep
  for (size_t p = 0; p < P; ++p) {
    const RlExample& ex = env.example(Split::Train, p);
    int c = 0;
    std::vector<std::string> keys;
    json sample_records = json::array();
    for (int j = 0; j < K; ++j) {
      const Sample& s = samples[p * K + j];
      c += s.score.correct ? 1 : 0;
      sum_len += double(s.completion.tokens.size());
      stopped += s.completion.stopped ? 1 : 0;
      format_ok += s.score.format_ok ? 1 : 0;
      keys.push_back(ex.kind == "math" && !s.score.answer.empty()
                         ? normalize_math_answer(s.score.answer)
                         : s.score.answer);
      if (out_file)
        sample_records.push_back({{"response", s.text},
                                  {"correct", s.score.correct},
                                  {"reward", s.score.reward},
                                  {"answer", s.score.answer},
                                  {"tokens", s.completion.tokens.size()},
                                  {"stopped", s.completion.stopped}});
      if (keep_file && s.score.correct) {
        json sft = {{"prompt", env.prompt_text(Split::Train, p)}, {"response", s.text}};
        if (!env_options.system_prompt.empty()) sft["system"] = env_options.system_prompt;
        keep_file->line(sft);
        ++kept;
      }
    }
    const int m = majority_index(keys);
    const bool maj_correct = m >= 0 && samples[p * K + size_t(m)].score.correct;
    sum_correct += c;
    sum_pass1 += pass_at_k(K, c, 1);
    sum_passk += pass_at_k(K, c, K);
    sum_maj += maj_correct ? 1 : 0;
    const double rate = double(c) / K;
    if (out_file)
      out_file->line({{"index", p},
                      {"line", ex.line},
                      {"prompt", ex.prompt},
                      {"answer", ex.reference},
                      {"samples", sample_records},
                      {"correct", c},
                      {"pass_rate", rate},
                      {"majority_answer", m >= 0 ? samples[p * K + size_t(m)].score.answer : ""},
                      {"majority_correct", maj_correct}});
    if (rates_file) rates_file->line({{"line", ex.line}, {"pass_rate", rate}});
    if (kept_problems_file && rate <= drop_above) kept_lines.push_back(ex.line);
  }
  if (kept_problems_file) {  // the kept problems' lines, verbatim, in file order
    std::ifstream data(data_path);
    std::string text;
    size_t at = 0, next = 0;
    std::sort(kept_lines.begin(), kept_lines.end());
    while (next < kept_lines.size() && std::getline(data, text))
      if (++at == kept_lines[next]) {
        kept_problems_file->raw_line(text);
        ++next;
      }
    require(next == kept_lines.size(), data_path + ": changed while it was being evaluated");
  }

  std::vector<AtomicFile*> files;
  for (auto* f : {out_file.get(), rates_file.get(), keep_file.get(), kept_problems_file.get()})
    if (f) files.push_back(f);
  for (auto* f : files) f->close();
  for (auto* f : files) f->rename();

  const double n = double(total);
  const std::string k = std::to_string(K);
  std::printf("avg@%-4s %s\n", k.c_str(), fmt("%.4f", sum_correct / n).c_str());
  std::printf("pass@1   %s\n", fmt("%.4f", sum_pass1 / double(P)).c_str());
  if (K > 1) std::printf("pass@%-3s %s\n", k.c_str(), fmt("%.4f", sum_passk / double(P)).c_str());
  std::printf("maj@%-4s %s\n", k.c_str(), fmt("%.4f", sum_maj / double(P)).c_str());
  std::printf("response length %.1f tokens (stopped %.1f%%, format ok %.1f%%)\n", sum_len / n,
              100.0 * double(stopped) / n, 100.0 * double(format_ok) / n);
  std::printf("time %s, %.1f samples/s, %.0f tokens/s\n", format_duration(elapsed).c_str(),
              n / std::max(elapsed, 1e-9), double(generated_tokens) / std::max(elapsed, 1e-9));
  if (out_file) std::printf("wrote %s (%zu problems)\n", out_path.c_str(), P);
  if (rates_file) std::printf("wrote %s (%zu pass rates)\n", pass_rates_path.c_str(), P);
  if (keep_file) std::printf("wrote %s (%zu correct samples)\n", keep_path.c_str(), kept);
  if (kept_problems_file)
    std::printf("wrote %s (%zu of %zu problems with pass rate <= %g)\n",
                kept_problems_path.c_str(), kept_lines.size(), P, drop_above);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  polaris::configure_openmp(argv);  // first: before the OpenMP runtime reads its settings
  return run_main([&]() { return run(argc, argv); });
}
