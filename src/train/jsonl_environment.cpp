#include "src/train/jsonl_environment.h"

#include <algorithm>
#include <cstdio>

#include "data/chat.h"
#include "data/jsonl_reader.h"
#include "src/common/error.h"

namespace polaris {

JsonlEnvironment::JsonlEnvironment(const Tokenizer& tokenizer, const std::string& train_jsonl,
                                   const std::string& eval_jsonl,
                                   const JsonlEnvironmentOptions& options)
    : tokenizer_(tokenizer), options_(options) {
  require(options.max_prompt_tokens >= 0, "--max-prompt (max prompt tokens) must be >= 0, got " +
                                              std::to_string(options.max_prompt_tokens));
  require(tokenizer_.token_to_id("<|im_start|>") >= 0 && tokenizer_.token_to_id("<|im_end|>") >= 0,
          tokenizer_.path() + ": the chat format needs <|im_start|> and <|im_end|>, which this "
                              "tokenizer does not have");
  for (const char* stop : {"<|im_end|>", "<|endoftext|>"}) {
    const int id = tokenizer_.token_to_id(stop);
    if (id >= 0 && std::find(stop_tokens_.begin(), stop_tokens_.end(), id) == stop_tokens_.end())
      stop_tokens_.push_back(id);
  }
  if (!options.pass_rates_path.empty()) pass_rates_ = read_pass_rates(options.pass_rates_path);
  train_ = load(train_jsonl);
  if (!eval_jsonl.empty()) eval_ = std::make_unique<Problems>(load(eval_jsonl));
}

JsonlEnvironment::Problems JsonlEnvironment::load(const std::string& path) const {
  RlDataset dataset = RlDataset::load(path, options_.skip_bad);
  Problems p;
  p.path = path;
  p.skipped = dataset.skipped_lines;
  const size_t n = dataset.examples.size();
  std::vector<std::vector<int32_t>> ids(n);
  std::vector<std::string> failures(n);
  // The tokenizer is thread-safe; rendering is independent per problem.
#pragma omp parallel for schedule(dynamic, 16)
  for (long long i = 0; i < (long long)n; ++i) {
    try {
      ids[size_t(i)] = render_generation_prompt(
          tokenizer_, rl_prompt_messages(dataset.examples[size_t(i)], options_.system_prompt),
          options_.enable_thinking);
    } catch (const std::exception& e) {
      failures[size_t(i)] = e.what();
    }
  }
  for (size_t i = 0; i < n; ++i) {
    if (!failures[i].empty())
      throw Error(path + ":" + std::to_string(dataset.examples[i].line) + ": " + failures[i]);
    if (options_.max_prompt_tokens > 0 && ids[i].size() > size_t(options_.max_prompt_tokens)) {
      ++p.dropped_long;
      continue;
    }
    p.examples.push_back(std::move(dataset.examples[i]));
    p.prompts.push_back(std::move(ids[i]));
  }
  if (!options_.quiet) {
    if (p.skipped > 0) std::printf("%s: skipped %zu malformed lines\n", path.c_str(), p.skipped);
    if (p.dropped_long > 0)
      std::printf("%s: dropped %zu of %zu prompts longer than %d tokens\n", path.c_str(),
                  p.dropped_long, n, options_.max_prompt_tokens);
  }
  require(!p.examples.empty(), path + ": every prompt is longer than " +
                                   std::to_string(options_.max_prompt_tokens) +
                                   " tokens (--max-prompt); nothing is left");
  return p;
}

const JsonlEnvironment::Problems& JsonlEnvironment::problems(Split split) const {
  return split == Split::Eval && eval_ ? *eval_ : train_;
}

const RlExample& JsonlEnvironment::checked(Split split, size_t index) const {
  const Problems& p = problems(split);
  require(index < p.examples.size(), "jsonl environment: problem " + std::to_string(index) +
                                         " out of range (" + std::to_string(p.examples.size()) +
                                         " problems in " + p.path + ")");
  return p.examples[index];
}

std::string JsonlEnvironment::name() const {
  return train_.path + (eval_ ? " (eval " + eval_->path + ")" : "");
}

std::string JsonlEnvironment::where(Split split, size_t index) const {
  return path(split) + ":" + std::to_string(checked(split, index).line);
}

size_t JsonlEnvironment::size(Split split) const { return problems(split).examples.size(); }

std::vector<int32_t> JsonlEnvironment::prompt(Split split, size_t index) const {
  checked(split, index);
  return problems(split).prompts[index];
}

const RlExample& JsonlEnvironment::example(Split split, size_t index) const {
  return checked(split, index);
}

const std::string& JsonlEnvironment::path(Split split) const { return problems(split).path; }
size_t JsonlEnvironment::skipped_lines(Split split) const { return problems(split).skipped; }
size_t JsonlEnvironment::dropped_long(Split split) const { return problems(split).dropped_long; }

std::string JsonlEnvironment::completion_text(const std::vector<int32_t>& completion,
                                              bool drop_stop) const {
  size_t n = completion.size();
  if (drop_stop && n > 0 &&
      std::find(stop_tokens_.begin(), stop_tokens_.end(), completion[n - 1]) != stop_tokens_.end())
    --n;
  std::vector<int32_t> ids;
  ids.reserve(n);
  const int V = tokenizer_.vocab_size();
  for (size_t i = 0; i < n; ++i) {
    const int32_t id = completion[i];
    if (id >= 0 && id < V && !tokenizer_.id_to_token(id).empty()) ids.push_back(id);
  }
  return tokenizer_.decode(ids);
}

Score JsonlEnvironment::score(Split split, size_t index, const std::vector<int32_t>& completion) const {
  const RlExample& ex = checked(split, index);
  VerifierResult r = verify(ex.kind, completion_text(completion, true), ex.reference, options_.verify);
  Score s;
  s.reward = r.reward;
  s.correct = r.correct;
  s.format_ok = r.format_ok;
  s.answer = r.extracted;
  return s;
}

std::string JsonlEnvironment::decode(const std::vector<int32_t>& completion) const {
  return completion_text(completion, true);
}

std::string JsonlEnvironment::prompt_text(Split split, size_t index) const {
  return checked(split, index).prompt;
}

std::optional<double> JsonlEnvironment::pass_rate(size_t train_index) const {
  const RlExample& ex = checked(Split::Train, train_index);
  auto it = pass_rates_.find(ex.line);
  if (it != pass_rates_.end()) return it->second;
  return ex.pass_rate;
}

std::unique_ptr<RlEnvironment> make_jsonl_environment(const Tokenizer& tokenizer,
                                                      const std::string& train_jsonl,
                                                      const std::string& eval_jsonl,
                                                      const JsonlEnvironmentOptions& options) {
  return std::make_unique<JsonlEnvironment>(tokenizer, train_jsonl, eval_jsonl, options);
}

std::map<size_t, double> read_pass_rates(const std::string& path) {
  std::map<size_t, double> rates;
  read_jsonl(path, /*skip_bad=*/false, [&](const nlohmann::json& record, size_t line) {
    require(record.is_object(), "expected a JSON object {\"line\": L, \"pass_rate\": x}");
    require(record.contains("line"), "missing \"line\"");
    require(record.contains("pass_rate"), "missing \"pass_rate\"");
    const nlohmann::json& l = record["line"];
    require(l.is_number_integer() && l.get<long long>() >= 1,
            "\"line\" must be a positive integer, got " + l.dump());
    const nlohmann::json& x = record["pass_rate"];
    require(x.is_number(), "\"pass_rate\" must be a number, got " + x.dump());
    const double rate = x.get<double>();
    require(rate >= 0.0 && rate <= 1.0, "\"pass_rate\" must be in [0, 1], got " + x.dump());
    const size_t data_line = size_t(l.get<long long>());
    require(rates.emplace(data_line, rate).second,
            "line " + std::to_string(data_line) + " is given twice");
  });
  return rates;
}

}  // namespace polaris
