// --mode grpo: the GRPO loop (the math is in src/train/grpo.h).
#include "src/train/grpo.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <random>
#include <sstream>

#include "data/row_sampler.h"
#include "model/scheduler.h"
#include "optim/watchdog.h"
#include "src/common/backend.h"
#include "src/train/jsonl_environment.h"
#include "src/train/loops.h"
#include "src/train/memory_check.h"
#include "src/train/packed_batches.h"
#include "src/train/run_checkpoint.h"
#include "src/train/step_report.h"
#include "src/train/synthetic_environment.h"
#include "src/train/train_flags.h"

namespace polaris {

// ---------------------------------------------------------------------------
// The pieces with a formula (tested one by one in tests/test_grpo.cpp)

double StagedValue::at(int step) const {
  double value = stages.front().second;
  for (const auto& stage : stages)
    if (step >= stage.first) value = stage.second;
  return value;
}

StagedValue StagedValue::parse(const std::string& flag, const std::string& text) {
  StagedValue staged;
  std::stringstream list(text);
  std::string item;
  while (std::getline(list, item, ',')) {
    size_t colon = item.find(':');
    try {
      size_t used = 0;
      if (colon == std::string::npos) {
        staged.stages.push_back({0, std::stod(item, &used)});
        require(used == item.size(), "");
      } else {
        int step = std::stoi(item.substr(0, colon), &used);
        require(used == colon && step >= 0, "");
        std::string value = item.substr(colon + 1);
        staged.stages.push_back({step, std::stod(value, &used)});
        require(used == value.size(), "");
      }
    } catch (const std::exception&) {
      throw Error("--" + flag + ": '" + item + "' is not VALUE or STEP:VALUE (e.g. 0:1.0,50:1.1)");
    }
  }
  require(!staged.stages.empty(), "--" + flag + " is empty");
  for (size_t i = 1; i < staged.stages.size(); ++i)
    require(staged.stages[i].first > staged.stages[i - 1].first,
            "--" + flag + ": stage steps must increase");
  return staged;
}

GrpoOptions GrpoOptions::from_flags(const Flags& flags) {
  GrpoOptions o;
  o.prompts_per_step = flags.count("prompts-per-step");
  o.group_size = flags.count("group-size");
  require(o.group_size >= 2, "--group-size must be at least 2 (advantages are group-relative)");
  o.minibatches = flags.count("minibatches");
  o.clip_low = float(flags.number("clip-low"));
  o.clip_high = float(flags.number("clip-high"));
  require(o.clip_low > 0 && o.clip_low < 1 && o.clip_high > 0,
          "--clip-low must be in (0, 1) and --clip-high positive");
  o.clip_ratio_c = float(flags.number("clip-ratio-c"));
  require(o.clip_ratio_c == 0 || o.clip_ratio_c > 1 + o.clip_high,
          "--clip-ratio-c must be 0 (off) or above 1 + --clip-high (Polaris uses 3)");
  o.kl_coef = float(flags.number("kl-coef"));
  o.entropy_coef = float(flags.number("entropy-coef"));
  require(o.kl_coef >= 0, "--kl-coef must be >= 0");
  o.std_normalize = !flags.has("no-std-normalize");
  // --dynamic-sampling alone is the refill mode; --dynamic-sampling-mode
  // picks one (and turns dynamic sampling on).
  if (flags.has("dynamic-sampling")) o.dynamic_sampling = DynamicSampling::Refill;
  if (flags.has("dynamic-sampling-mode")) {
    const std::string mode = flags.text("dynamic-sampling-mode");
    if (mode == "refill") o.dynamic_sampling = DynamicSampling::Refill;
    else if (mode == "substitute") o.dynamic_sampling = DynamicSampling::Substitute;
    else throw Error("--dynamic-sampling-mode: '" + mode + "' is not refill or substitute");
  }
  o.max_refills = flags.integer("max-refills");
  require(o.max_refills >= 0, "--max-refills must be >= 0");
  require(!flags.has("max-refills") || o.dynamic_sampling == DynamicSampling::Refill,
          "--max-refills applies to the refill mode of dynamic sampling (--dynamic-sampling)");
  o.temperature = flags.has("temperature-schedule")
                      ? StagedValue::parse("temperature-schedule", flags.text("temperature-schedule"))
                      : StagedValue::constant(flags.number("temperature"));
  o.max_response =
      flags.has("max-response-schedule")
          ? StagedValue::parse("max-response-schedule", flags.text("max-response-schedule"))
          : StagedValue::constant(double(flags.count("max-response")));
  for (auto& stage : o.temperature.stages)
    require(stage.second > 0, "--temperature must be positive for GRPO rollouts");
  for (auto& stage : o.max_response.stages)
    require(stage.second >= 1, "--max-response must be at least 1");
  o.top_p = float(flags.number("top-p"));
  require(o.top_p > 0 && o.top_p <= 1, "--top-p must be in (0, 1]");
  o.top_k = flags.integer("top-k");
  require(o.top_k >= 0, "--top-k must be >= 0 (0: no cut)");
  o.min_p = float(flags.number("min-p"));
  require(o.min_p >= 0 && o.min_p <= 1, "--min-p must be in [0, 1] (0: no cut)");
  o.eval_temperature = float(flags.number("eval-temperature"));
  require(o.eval_temperature >= 0, "--eval-temperature must be >= 0 (0: greedy)");
  o.eval_samples = flags.count("eval-samples");
  o.eval_every = flags.integer("eval-every");
  require(o.eval_every >= 0, "--eval-every must be >= 0 (0: before and after only)");
  o.pass_rates_path = flags.text("pass-rates");
  return o;
}

GrpoOptions GrpoOptions::defaults() {
  char program[] = "polaris_train";
  char* argv[] = {program};
  return from_flags(Flags(1, argv, train_flag_table()));
}

std::vector<double> group_advantages(const std::vector<double>& rewards, int group_size,
                                     bool std_normalize) {
  require(group_size > 0 && rewards.size() % size_t(group_size) == 0,
          "group_advantages: rewards must fill whole groups");
  std::vector<double> advantages(rewards.size());
  for (size_t first = 0; first < rewards.size(); first += size_t(group_size)) {
    double mean = 0, variance = 0;
    for (int i = 0; i < group_size; ++i) mean += rewards[first + i];
    mean /= group_size;
    for (int i = 0; i < group_size; ++i) variance += std::pow(rewards[first + i] - mean, 2);
    // The unbiased (n - 1) standard deviation, as GRPO's reference code uses.
    const double std_dev = std::sqrt(variance / (group_size - 1));
    for (int i = 0; i < group_size; ++i) {
      const double centred = rewards[first + i] - mean;
      advantages[first + i] = std_normalize ? centred / (std_dev + 1e-6) : centred;
    }
  }
  return advantages;
}

bool zero_variance_group(const std::vector<double>& rewards, size_t first, int group_size) {
  for (int i = 1; i < group_size; ++i)
    if (rewards[first + i] != rewards[first]) return false;
  return true;
}

bool substitution_keeps_step(int informative, int groups) { return 3 * informative > groups; }

std::vector<int> substitution_sources(const std::vector<double>& rewards, int group_size,
                                      uint64_t seed) {
  require(group_size > 0 && rewards.size() % size_t(group_size) == 0,
          "substitution_sources: rewards must fill whole groups");
  const int groups = int(rewards.size() / size_t(group_size));
  std::vector<int> informative, sources(size_t(groups), -1);
  for (int g = 0; g < groups; ++g)
    if (!zero_variance_group(rewards, size_t(g) * size_t(group_size), group_size)) {
      informative.push_back(g);
      sources[size_t(g)] = g;
    }
  if (informative.empty()) return sources;
  std::vector<int> shuffled = informative;
  std::mt19937_64 rng(seed);
  std::shuffle(shuffled.begin(), shuffled.end(), rng);
  size_t next = 0;
  for (int& source : sources)
    if (source < 0) source = shuffled[next++ % shuffled.size()];
  return sources;
}

PolicyTokenTerms policy_token_terms(float logprob, float old_logprob, double advantage,
                                    const float* ref_logprob, const GrpoOptions& o) {
  PolicyTokenTerms t;
  const double ratio = std::exp(double(logprob) - double(old_logprob));
  const double clipped_ratio = std::min(std::max(ratio, 1.0 - o.clip_low), 1.0 + o.clip_high);
  const double unclipped = ratio * advantage, clipped = clipped_ratio * advantage;
  t.objective = std::min(unclipped, clipped);
  t.clipped = clipped < unclipped;
  if (o.clip_ratio_c > 0 && advantage < 0 && o.clip_ratio_c * advantage > t.objective) {
    t.objective = o.clip_ratio_c * advantage;  // dual clip: constant, so no gradient
    t.clipped = true;
  }
  double weight = t.clipped ? 0.0 : ratio * advantage;
  if (ref_logprob && o.kl_coef > 0) {
    const double log_ratio = double(*ref_logprob) - double(logprob);
    t.kl = std::exp(log_ratio) - log_ratio - 1.0;
    weight -= o.kl_coef * (1.0 - std::exp(log_ratio));
  }
  t.weight = float(weight);
  return t;
}

// ---------------------------------------------------------------------------
// The loop

namespace {

const char* const kDynamicSamplingNames[] = {"off", "refill", "substitute"};

// What the per-step console line shows; the JSONL record has everything.
const std::vector<std::string> kConsoleKeys = {"reward", "accuracy", "response_len", "kl",
                                               "clip_frac", "entropy"};

struct Rollout {
  size_t problem = 0;
  std::vector<int32_t> prompt;
  Completion completion;
  Score score;
  double advantage = 0;
  std::vector<float> ref_logprobs;  // per completion token (with a reference model)
};

// Where a rollout sits in the packed rows of a mini-batch.
struct Placement {
  size_t row, offset;
};

// Packs rollouts (prompt + completion) into rows of T tokens in order, each
// its own document. The weights are left 0: the caller fills in the
// completion tokens' weights once it has their ratios.
std::vector<PackedRow> pack_rollouts(const std::vector<const Rollout*>& rollouts, int T,
                                     std::vector<Placement>& placements) {
  std::vector<PackedRow> rows;
  size_t fill = size_t(T);
  placements.clear();
  for (const Rollout* r : rollouts) {
    // Inputs are the prompt and every completion token but the last, which is
    // only a target: the sampler never fed it back, so it may stand one
    // position past the model's last.
    std::vector<int32_t> sequence = r->prompt;
    sequence.insert(sequence.end(), r->completion.tokens.begin(), r->completion.tokens.end());
    const size_t length = sequence.size() - 1;
    if (fill + length > size_t(T)) {
      PackedRow row;
      row.tokens.assign(T, 0);
      row.targets.assign(T, -1);
      row.weights.assign(T, 0.f);
      row.positions.assign(T, 0);
      row.doc_ids.assign(T, -1);
      rows.push_back(row);
      fill = 0;
    }
    PackedRow& row = rows.back();
    placements.push_back({rows.size() - 1, fill});
    for (size_t j = 0; j < length; ++j) {
      row.tokens[fill + j] = sequence[j];
      row.targets[fill + j] = sequence[j + 1];
      row.positions[fill + j] = int32_t(j);
      row.doc_ids[fill + j] = row.num_documents;
    }
    row.num_documents += 1;
    fill += length;
  }
  // Padding forms one more document so it attends only to itself.
  for (PackedRow& row : rows)
    for (int32_t& doc : row.doc_ids)
      if (doc < 0) doc = row.num_documents;
  return rows;
}

std::vector<double> rewards_of(const std::vector<Rollout>& rollouts) {
  std::vector<double> rewards;
  for (const Rollout& r : rollouts) rewards.push_back(r.score.reward);
  return rewards;
}

double elapsed_ms(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - since)
      .count();
}

class GrpoRun {
 public:
  GrpoRun(const TrainOptions& options, const GrpoOptions& grpo, RlEnvironment& env,
          Transformer& policy, Transformer* reference)
      : options_(options), grpo_(grpo), env_(env), policy_(policy), reference_(reference),
        trainer_(policy, options.trainer),
        reporter_(options.steps, options.print_every, options.log_path,
                  options.resume) {
    require(env.size(Split::Train) > 0 && env.size(Split::Eval) > 0,
            "--mode grpo: no training or evaluation problems (see --train-examples, "
            "--eval-problems, --data, --eval-data)");
    for (size_t i = 0; i < env.size(Split::Train); ++i) {
      std::optional<double> rate = env.pass_rate(i);
      // Offline difficulty filter: a prompt every sample solved, or none did,
      // gives every rollout the same reward and so no gradient.
      if (rate && (*rate <= 0.0 || *rate >= 1.0)) continue;
      trainable_.push_back(i);
    }
    require(!trainable_.empty(),
            (options.grpo.pass_rates_path.empty() ? "--data " + options.data
                                                  : "--pass-rates " + options.grpo.pass_rates_path) +
                ": no training problem is left after the difficulty filter (every pass rate is "
                "0 or 1, and GRPO learns only from problems the model sometimes solves)");
    if (trainable_.size() < env.size(Split::Train))
      std::printf("difficulty filter: %zu of %zu problems kept (pass rate strictly between 0 and 1)\n",
                  trainable_.size(), env.size(Split::Train));
    // Data parallel: rank r of W samples prompts_per_step / W of each step's
    // prompts. The prompts come from one global order (a seeded shuffle of
    // the trainable problems, epoch after epoch) read by one global cursor:
    // each sampling round, ranks take consecutive blocks in rank order and
    // every rank advances the cursor by the round's total. Prompt k of that
    // order samples its G completions from random streams k*G .. k*G + G-1.
    // So the run's position is one number, whatever the number of ranks, and
    // a checkpoint resumes on any number of ranks. Groups live on one rank,
    // so advantages are computed locally; the metrics and the decisions every
    // rank must share (skip the step, the number of mini-batches, another
    // refill round) are reduced over ranks.
    comm_ = options.world_size() > 1 ? options.comm.get() : nullptr;
    rank_ = options.rank();
    world_ = options.world_size();
    require(grpo.prompts_per_step % world_ == 0,
            "--prompts-per-step " + std::to_string(grpo.prompts_per_step) +
                " must be divisible by the number of ranks (" + std::to_string(world_) + ")");
    local_prompts_ = grpo.prompts_per_step / world_;
    prompt_order_.reset(new RowSampler(trainable_.size(), options.seed));
  }

  // avg@k on the evaluation split: the mean correctness of k samples each.
  // Ranks take contiguous blocks of the problems; the random streams are
  // numbered globally, so the samples are those one process would draw.
  double evaluate(int step) {
    WatchdogPhase phase("evaluation");
    const size_t problems = env_.size(Split::Eval);
    const size_t first = problems * size_t(rank_) / size_t(world_);
    const size_t last = problems * size_t(rank_ + 1) / size_t(world_);
    std::vector<std::vector<int32_t>> prompts;
    for (size_t i = first; i < last; ++i) prompts.push_back(env_.prompt(Split::Eval, i));
    SamplingParams params = sampling(grpo_.eval_temperature, int(grpo_.max_response.at(step)));
    params.seed = options_.seed ^ 0x5eedull;
    std::vector<Completion> completions =
        generate_groups(policy_, prompts, grpo_.eval_samples, params,
                        uint64_t(first) * uint64_t(grpo_.eval_samples));
    double counts[2] = {0, double(completions.size())};
    for (size_t j = 0; j < completions.size(); ++j)
      counts[0] +=
          env_.score(Split::Eval, first + j / grpo_.eval_samples, completions[j].tokens).correct;
    if (comm_) comm_->all_reduce_sum(counts, 2);
    const double avg = counts[0] / std::max(counts[1], 1.0);
    reporter_.event("eval", {{"step", step},
                             {"avg_at_k", avg},
                             {"k", grpo_.eval_samples},
                             {"problems", problems}});
    return avg;
  }

  // Trains to --steps; returns avg@k before and after.
  Trainer& trainer() { return trainer_; }

  std::pair<double, double> train() {
    RunCheckpoints checkpoints(options_);
    int first_step = 0;
    double before = 0;
    const std::optional<ResumedRun> resumed = checkpoints.resume(policy_, trainer_);
    // Resumed at --steps, the final evaluation (written after the last
    // checkpoint) runs again below: its old record goes.
    reporter_.resume_at(resumed ? resumed->step : -1, resumed && resumed->step == options_.steps);
    if (resumed) {
      first_step = resumed->step;
      before = restore(*resumed);
      if (reference_) reference_->set_params(resumed->extra_tensors.at("reference_params"));
    } else {
      before = evaluate(0);
    }
    for (int step = first_step; step < options_.steps; ++step) {
      WatchdogStep watched(step + 1);
      one_step(step);
      if (grpo_.eval_every > 0 && (step + 1) % grpo_.eval_every == 0 && step + 1 < options_.steps)
        evaluate(step + 1);
      if (checkpoints.due(step + 1)) {
        std::map<std::string, std::vector<float>> extra;
        if (reference_) extra["reference_params"] = reference_->get_params();
        checkpoints.save(step + 1, policy_, trainer_, state(before), extra);
      }
    }
    const double after = evaluate(options_.steps);
    return {before, after};
  }

 private:
  SamplingParams sampling(double temperature, int max_response) const {
    SamplingParams p;
    p.temperature = float(temperature);
    p.top_p = grpo_.top_p;
    p.top_k = grpo_.top_k;
    p.min_p = grpo_.min_p;
    p.max_new_tokens = max_response;
    p.stop_tokens = env_.stop_tokens();
    p.max_batch = std::max(64, grpo_.prompts_per_step * grpo_.group_size);
    p.on_step = watchdog_tick;  // each generation step is progress
    return p;
  }

  // This round's prompt slots: `mine` for this rank, after those of the lower
  // ranks; the global cursor moves past every rank's. Collective. Returns
  // this rank's first slot.
  uint64_t claim_prompts(int mine) {
    std::vector<double> counts(size_t(world_), 0.0);
    counts[size_t(rank_)] = mine;
    if (comm_) comm_->all_reduce_sum(counts.data(), counts.size());
    uint64_t first = prompts_taken_;
    for (int q = 0; q < world_; ++q) {
      if (q < rank_) first += uint64_t(counts[size_t(q)]);
      prompts_taken_ += uint64_t(counts[size_t(q)]);
    }
    return first;
  }

  // The problem in slot k of the global prompt order.
  size_t problem_at(uint64_t slot) const {
    const uint64_t n = trainable_.size();
    return trainable_[prompt_order_->permuted(slot / n, slot % n)];
  }

  // Samples `groups` new prompt groups (this rank's share of a round; every
  // rank calls it) at this step's temperature and length.
  std::vector<Rollout> sample_groups(int step, int groups) {
    WatchdogPhase phase("rollouts");
    const uint64_t first_slot = claim_prompts(groups);
    if (groups == 0) return {};
    std::vector<std::vector<int32_t>> prompts;
    std::vector<size_t> problems;
    for (int g = 0; g < groups; ++g) {
      problems.push_back(problem_at(first_slot + uint64_t(g)));
      prompts.push_back(env_.prompt(Split::Train, problems.back()));
    }
    SamplingParams params =
        sampling(grpo_.temperature.at(step), int(grpo_.max_response.at(step)));
    params.seed = options_.seed;
    // Slot k's completions draw from streams k*G .. k*G + G-1 (the
    // single-process numbering). A group's completions share the prompt's
    // KV-cache blocks.
    const int G = grpo_.group_size;
    std::vector<Completion> completions =
        generate_groups(policy_, prompts, G, params, first_slot * uint64_t(G));
    std::vector<Rollout> rollouts(completions.size());
    for (size_t j = 0; j < completions.size(); ++j) {
      rollouts[j].problem = problems[j / size_t(G)];
      rollouts[j].prompt = prompts[j / size_t(G)];
      rollouts[j].completion = std::move(completions[j]);
      rollouts[j].score =
          env_.score(Split::Train, rollouts[j].problem, rollouts[j].completion.tokens);
    }
    return rollouts;
  }

  // Polaris's in-batch substitution (grpo.h) on this rank's groups. The keep
  // or skip decision counts informative groups over all ranks (every rank
  // decides the same); copies come from the rank's own informative groups,
  // so a rank with none drops its groups for the step. Skipped: `batch` is
  // emptied, which the caller logs as a skipped step. Counts are global.
  void substitute_groups(int step, std::vector<Rollout>& batch, int& informative,
                         int& substituted, size_t& dropped) {
    const int G = grpo_.group_size;
    const std::vector<int> sources = substitution_sources(
        rewards_of(batch), G, options_.seed * 104729 + uint64_t(step) * 1009 + uint64_t(rank_));
    double counts[2] = {0, 0};  // informative, substituted (copies made)
    for (size_t g = 0; g < sources.size(); ++g) {
      if (sources[g] == int(g)) counts[0] += 1;
      else if (sources[g] >= 0) counts[1] += 1;
    }
    if (comm_) comm_->all_reduce_sum(counts, 2);
    informative = int(counts[0]);
    dropped = 0;  // the uninformative groups: replaced by copies, or gone
    for (size_t g = 0; g < sources.size(); ++g) dropped += sources[g] != int(g);
    if (!substitution_keeps_step(informative, grpo_.prompts_per_step)) {
      dropped = batch.size() / size_t(G);  // this rank's groups all go
      substituted = 0;
      batch.clear();
      return;
    }
    substituted = int(counts[1]);
    std::vector<Rollout> out;
    for (int source : sources)
      if (source >= 0)
        for (int i = 0; i < G; ++i) out.push_back(batch[size_t(source) * size_t(G) + size_t(i)]);
    batch = std::move(out);
  }

  void one_step(int step) {
    const int G = grpo_.group_size;
    auto rollout_start = std::chrono::steady_clock::now();
    std::vector<Rollout> batch = sample_groups(step, local_prompts_);
    // All sampled rollouts count for reward and accuracy, kept or not.
    double reward_sum = 0, correct = 0, length_sum = 0, length_max = 0;
    size_t sampled = 0, groups_dropped = 0;
    auto tally = [&](const std::vector<Rollout>& rollouts) {
      for (const Rollout& r : rollouts) {
        reward_sum += r.score.reward;
        correct += r.score.correct;
        length_sum += double(r.completion.tokens.size());
        length_max = std::max(length_max, double(r.completion.tokens.size()));
        ++sampled;
      }
    };
    tally(batch);
    int informative_groups = -1, substituted_groups = 0;  // substitute mode only
    if (grpo_.dynamic_sampling == DynamicSampling::Substitute) {
      substitute_groups(step, batch, informative_groups, substituted_groups, groups_dropped);
    } else if (grpo_.dynamic_sampling == DynamicSampling::Refill) {
      std::vector<Rollout> kept;
      for (int round = 0;; ++round) {
        const std::vector<double> rewards = rewards_of(batch);
        for (size_t first = 0; first < batch.size(); first += size_t(G)) {
          if (zero_variance_group(rewards, first, G)) {
            ++groups_dropped;
            continue;
          }
          for (int i = 0; i < G; ++i) kept.push_back(std::move(batch[first + i]));
          if (int(kept.size()) == local_prompts_ * G) break;
        }
        const int missing = local_prompts_ - int(kept.size()) / G;
        double missing_anywhere = missing;  // every rank refills in the same rounds
        if (comm_) comm_->all_reduce_sum(&missing_anywhere, 1);
        if (missing_anywhere == 0 || round >= grpo_.max_refills) break;
        batch = sample_groups(step, missing);
        tally(batch);
      }
      batch = std::move(kept);
    }
    const double rollout_ms = elapsed_ms(rollout_start);

    // Sums over ranks for the log (each rank's own rollouts otherwise).
    double kept_groups = double(batch.size() / size_t(G)), dropped = double(groups_dropped);
    if (comm_) {
      double sums[6] = {reward_sum, correct, length_sum, double(sampled), kept_groups, dropped};
      comm_->all_reduce_sum(sums, 6);
      reward_sum = sums[0];
      correct = sums[1];
      length_sum = sums[2];
      sampled = size_t(sums[3]);
      kept_groups = sums[4];
      groups_dropped = size_t(sums[5]);
      comm_->all_reduce_max(&length_max, 1);
    }
    nlohmann::json record = {
        {"reward", reward_sum / sampled},
        {"accuracy", correct / sampled},
        {"response_len", length_sum / sampled},
        {"response_len_max", length_max},
        {"groups_kept", int(kept_groups)},
        {"groups_dropped", groups_dropped},
        {"dynamic_sampling", kDynamicSamplingNames[int(grpo_.dynamic_sampling)]},
        {"temperature", grpo_.temperature.at(step)},
        {"max_response", grpo_.max_response.at(step)},
        {"rollout_ms", rollout_ms},
    };
    if (informative_groups >= 0)
      record.update({{"groups_informative", informative_groups},
                     {"groups_substituted", substituted_groups}});
    // Without KL or entropy terms, groups of equal rewards carry no gradient;
    // an optimizer step on them would still move the weights (momentum).
    const bool only_policy_terms = grpo_.kl_coef == 0 && grpo_.entropy_coef == 0;
    bool any_signal = !only_policy_terms;
    const std::vector<double> rewards = rewards_of(batch);
    for (size_t first = 0; first < batch.size() && !any_signal; first += size_t(G))
      any_signal = !zero_variance_group(rewards, first, G);
    // The same decision on every rank: train when any rank has a signal.
    double signal = (!batch.empty() && any_signal) ? 1.0 : 0.0;
    if (comm_) comm_->all_reduce_sum(&signal, 1);
    if (signal == 0) {
      // Every group had equal rewards: nothing to learn from this step.
      StepStats stats;
      stats.step = step + 1;
      stats.lr = options_.trainer.schedule.lr_at(trainer_.step_count());
      stats.ms = rollout_ms;
      record.update({{"kl", 0.0}, {"clip_frac", 0.0}, {"entropy", 0.0}, {"logprob_ms", 0.0},
                     {"update_ms", 0.0}, {"skipped", true}});
      reporter_.report(stats, record, kConsoleKeys);
      return;
    }

    std::vector<double> advantages = group_advantages(rewards, G, grpo_.std_normalize);
    for (size_t j = 0; j < batch.size(); ++j) batch[j].advantage = advantages[j];

    double logprob_ms = 0, update_ms = 0;
    const int T = row_length(batch);
    if (reference_) {
      auto start = std::chrono::steady_clock::now();
      std::vector<const Rollout*> all;
      for (const Rollout& r : batch) all.push_back(&r);
      std::vector<std::vector<float>> ref = completion_logprobs(*reference_, all, T);
      for (size_t j = 0; j < batch.size(); ++j) batch[j].ref_logprobs = std::move(ref[j]);
      logprob_ms += elapsed_ms(start);
    }

    // Mini-batches: a fixed shuffle of the rollouts cut into M parts.
    std::vector<size_t> order(batch.size());
    std::iota(order.begin(), order.end(), 0);
    std::mt19937_64 rng(options_.seed * 7919 + uint64_t(step));
    std::shuffle(order.begin(), order.end(), rng);
    // M is the same on every rank: at most the largest rank's rollout count
    // (a rank with fewer rollouts trains some mini-batches on nothing).
    double most_rollouts = double(batch.size());
    if (comm_) comm_->all_reduce_max(&most_rollouts, 1);
    const int M = std::min<int>(grpo_.minibatches, int(most_rollouts));
    double objective_sum = 0, kl_sum = 0, entropy_sum = 0, grad_norm_sum = 0, tokens_total = 0;
    size_t clipped = 0, tokens_counted = 0;
    StepStats last;
    for (int m = 0; m < M; ++m) {
      std::vector<const Rollout*> part;
      for (size_t j = m; j < order.size(); j += size_t(M)) part.push_back(&batch[order[j]]);
      // The first mini-batch runs on the weights that sampled it: its ratios
      // are exactly 1. Later ones need the current log-probs first.
      std::vector<std::vector<float>> current;
      if (m > 0) {
        auto start = std::chrono::steady_clock::now();
        current = completion_logprobs(policy_, part, T);
        logprob_ms += elapsed_ms(start);
      }
      auto start = std::chrono::steady_clock::now();
      std::vector<Placement> places;
      std::vector<PackedRow> rows = pack_rollouts(part, T, places);
      size_t tokens = 0;
      std::vector<std::pair<size_t, size_t>> completion_positions;  // (row, position)
      for (size_t j = 0; j < part.size(); ++j) {
        const Rollout& r = *part[j];
        PackedRow& row = rows[places[j].row];
        for (size_t t = 0; t < r.completion.tokens.size(); ++t) {
          const float old_lp = r.completion.logprobs[t];
          const float lp = m > 0 ? current[j][t] : old_lp;
          PolicyTokenTerms terms = policy_token_terms(
              lp, old_lp, r.advantage, reference_ ? &r.ref_logprobs[t] : nullptr, grpo_);
          // Completion token t is predicted at the position just before it.
          const size_t position = places[j].offset + r.prompt.size() + t - 1;
          row.weights[position] = terms.weight;
          completion_positions.push_back({places[j].row, position});
          objective_sum += terms.objective;
          kl_sum += terms.kl;
          clipped += terms.clipped;
          ++tokens;
        }
      }
      std::vector<Batch> micro = micro_batches(rows);
      const size_t rows_per_micro = size_t(options_.batch);
      if (grpo_.entropy_coef != 0) {
        // The entropy bonus covers every completion token, clipped or not.
        for (Batch& b : micro) b.entropy_weights.assign(b.weights.size(), 0.f);
        for (const auto& at : completion_positions)
          micro[at.first / rows_per_micro]
              .entropy_weights[(at.first % rows_per_micro) * size_t(T) + at.second] =
              grpo_.entropy_coef;
      }
      last = trainer_.step(micro, std::max(global_sum(comm_, double(tokens)), 1.0));
      for (const auto& at : completion_positions)
        entropy_sum += last.outputs[at.first / rows_per_micro]
                           .entropies[(at.first % rows_per_micro) * size_t(T) + at.second];
      grad_norm_sum += last.grad_norm;
      tokens_counted += tokens;
      tokens_total += last.tokens;
      update_ms += elapsed_ms(start);
    }
    if (comm_) {
      double sums[5] = {objective_sum, kl_sum, entropy_sum, double(clipped),
                        double(tokens_counted)};
      comm_->all_reduce_sum(sums, 5);
      objective_sum = sums[0];
      kl_sum = sums[1];
      entropy_sum = sums[2];
      clipped = size_t(sums[3]);
      tokens_counted = size_t(sums[4]);
    }
    tokens_counted = std::max<size_t>(tokens_counted, 1);
    StepStats stats = last;
    stats.step = step + 1;
    stats.loss = (-objective_sum + grpo_.kl_coef * kl_sum - grpo_.entropy_coef * entropy_sum) /
                 double(tokens_counted);
    stats.grad_norm = grad_norm_sum / M;
    stats.tokens = (long long)tokens_total;
    stats.ms = rollout_ms + logprob_ms + update_ms;
    record.update({{"kl", kl_sum / double(tokens_counted)},
                   {"clip_frac", double(clipped) / double(tokens_counted)},
                   {"entropy", entropy_sum / double(tokens_counted)},
                   {"logprob_ms", logprob_ms},
                   {"update_ms", update_ms},
                   {"optimizer_steps", M}});
    reporter_.report(stats, record, kConsoleKeys);
  }

  // Packed row length: the longest rollout's inputs (its last token is only
  // a target).
  int row_length(const std::vector<Rollout>& rollouts) const {
    size_t longest = 0;
    for (const Rollout& r : rollouts)
      longest = std::max(longest, r.prompt.size() + r.completion.tokens.size() - 1);
    return int(longest);
  }

  // Rows in micro-batches of at most --batch rows each.
  std::vector<Batch> micro_batches(const std::vector<PackedRow>& rows) {
    std::vector<Batch> micro;
    for (size_t first = 0; first < rows.size(); first += size_t(options_.batch)) {
      std::vector<size_t> indices;
      for (size_t i = first; i < std::min(rows.size(), first + size_t(options_.batch)); ++i)
        indices.push_back(i);
      micro.push_back(batch_from_packed_rows(rows, indices));
    }
    return micro;
  }

  // Log-probabilities of every completion token under `model`.
  std::vector<std::vector<float>> completion_logprobs(Transformer& model,
                                                      const std::vector<const Rollout*>& rollouts,
                                                      int T) {
    WatchdogPhase phase("log-probs");
    std::vector<Placement> places;
    std::vector<PackedRow> rows = pack_rollouts(rollouts, T, places);
    std::vector<std::vector<float>> row_logprobs(rows.size());
    for (size_t first = 0; first < rows.size(); first += size_t(options_.batch)) {
      std::vector<size_t> indices;
      for (size_t i = first; i < std::min(rows.size(), first + size_t(options_.batch)); ++i)
        indices.push_back(i);
      watchdog_tick();
      LossOutputs out = model.forward(batch_from_packed_rows(rows, indices));
      for (size_t k = 0; k < indices.size(); ++k)
        row_logprobs[indices[k]].assign(out.logprobs.begin() + k * T,
                                        out.logprobs.begin() + (k + 1) * T);
    }
    std::vector<std::vector<float>> result(rollouts.size());
    for (size_t j = 0; j < rollouts.size(); ++j) {
      const Rollout& r = *rollouts[j];
      for (size_t t = 0; t < r.completion.tokens.size(); ++t)
        result[j].push_back(row_logprobs[places[j].row][places[j].offset + r.prompt.size() + t - 1]);
    }
    return result;
  }

  // The RL state a checkpoint carries: the global prompt cursor (the random
  // streams follow from it) and the first evaluation. The stage
  // (temperature, response length) follows from the step and the schedule
  // flags, which must match on resume. Independent of the number of ranks.
  nlohmann::json state(double eval_before) {
    return {{"prompts_taken", prompts_taken_}, {"eval_before", eval_before}};
  }

  // Continues from state() on any number of ranks; returns the first
  // evaluation's avg@k. A checkpoint of an older build (per-rank prompt
  // positions) resumes when one rank saved it: its position is the cursor.
  double restore(const ResumedRun& resumed) {
    const nlohmann::json& s = resumed.state;
    const std::string file = resumed.path + "/state.json";
    if (s.contains("prompts_taken")) {
      require(s["prompts_taken"].is_number_unsigned(),
              file + ": \"loop.prompts_taken\" must be a non-negative integer");
      prompts_taken_ = s["prompts_taken"].get<uint64_t>();
    } else {
      const nlohmann::json& ranks = s.contains("ranks") ? s["ranks"] : nlohmann::json();
      require(ranks.is_array() && ranks.size() % 3 == 0 && !ranks.empty(),
              file + ": missing \"loop.prompts_taken\"");
      require(ranks.size() == 3, file + ": saved by an older build on " +
                                     std::to_string(ranks.size() / 3) +
                                     " ranks, whose prompt positions were per rank; resume "
                                     "it with that build");
      prompts_taken_ = ranks[0].get<uint64_t>() * trainable_.size() + ranks[1].get<uint64_t>();
    }
    return resumed.number("eval_before");
  }

  const TrainOptions& options_;
  const GrpoOptions& grpo_;
  RlEnvironment& env_;
  Transformer& policy_;
  Transformer* reference_;
  Trainer trainer_;
  StepReporter reporter_;
  std::vector<size_t> trainable_;
  std::unique_ptr<RowSampler> prompt_order_;  // the global prompt order
  uint64_t prompts_taken_ = 0;                 // the global cursor into it
  Comm* comm_ = nullptr;  // null in a single process
  int rank_ = 0, world_ = 1;
  int local_prompts_ = 0;  // this rank's prompts per step
};

std::unique_ptr<RlEnvironment> grpo_environment(const TrainOptions& options) {
  if (!options.task.empty())
    return make_synthetic_environment(options.task, size_t(options.train_examples),
                                      size_t(options.eval_problems), options.seed);
  require(!options.data.empty(), "--mode grpo needs --data problems.jsonl (with --tokenizer) "
                                 "or a built-in --task");
  require(!options.tokenizer.empty(), "--mode grpo with JSONL data needs --tokenizer tokenizer.json");
  JsonlEnvironmentOptions env_options;
  env_options.skip_bad = options.skip_bad;
  env_options.pass_rates_path = options.grpo.pass_rates_path;
  env_options.system_prompt = options.system_prompt;
  env_options.max_prompt_tokens = options.max_prompt;
  return make_jsonl_environment(Tokenizer::load(options.tokenizer), options.data,
                                options.eval_data, env_options);
}

// Every prompt's ids are in the model's vocabulary, and the longest prompt
// plus the longest response stage fits its positions (the last sampled token
// is never fed back, hence the - 1): checked before any rollout, so a bad
// setting ends at once with the flag's name rather than at a later stage.
// Returns the longest sequence a rollout can be (prompt + response).
size_t check_fits_model(const RlEnvironment& env, const TrainOptions& options,
                        const ModelConfig& config) {
  const GrpoOptions& grpo = options.grpo;
  size_t longest = 0;
  for (Split split : {Split::Train, Split::Eval})
    for (size_t i = 0; i < env.size(split); ++i) {
      const std::vector<int32_t> prompt = env.prompt(split, i);
      for (int32_t id : prompt)
        require(id >= 0 && id < config.vocab_size,
                outside_vocabulary(options, env.where(split, i) + ": prompt", id, config.vocab_size));
      longest = std::max(longest, prompt.size());
    }
  double response = 0;
  for (const auto& stage : grpo.max_response.stages) response = std::max(response, stage.second);
  require(longest + size_t(response) - 1 <= size_t(config.context_limit()),
          "--max-response" + std::string(grpo.max_response.stages.size() > 1 ? "-schedule" : "") +
              ": the longest prompt (" + std::to_string(longest) + " tokens) plus " +
              std::to_string(size_t(response)) + " response tokens exceeds the model's " +
              std::to_string(config.context_limit()) + " positions (lower it, or --max-prompt)");
  return longest + size_t(response);
}

}  // namespace

int run_grpo(const TrainOptions& options) {
  const GrpoOptions& grpo = options.grpo;
  std::unique_ptr<RlEnvironment> env = grpo_environment(options);
  // The schedule advances once per optimizer step: M of them per GRPO step.
  TrainOptions run_options = options;
  const LrSchedule& given = options.trainer.schedule;
  run_options.trainer.schedule =
      make_schedule(given.kind, given.max_lr, given.min_lr_fraction,
                    given.warmup_steps * grpo.minibatches, options.steps * grpo.minibatches);
  const ModelConfig config = starting_config(options);
  const size_t longest_rollout = check_fits_model(*env, options, config);
  // A mini-batch trains on this rank's share of the P x G rollouts over M
  // (dynamic sampling refills keep the count at P x G).
  const size_t rollouts_per_rank =
      (size_t(grpo.prompts_per_step) * grpo.group_size + options.world_size() - 1) /
      options.world_size();
  const size_t minibatch_rollouts = (rollouts_per_rank + grpo.minibatches - 1) / grpo.minibatches;
  require_step_fits_in_memory(
      options, config, minibatch_rollouts * longest_rollout,
      "--prompts-per-step " + std::to_string(grpo.prompts_per_step) + " --group-size " +
          std::to_string(grpo.group_size) + " --minibatches " + std::to_string(grpo.minibatches) +
          " with rollouts of up to " + std::to_string(longest_rollout) + " tokens");
  LoadedModel start = starting_model(options);
  std::unique_ptr<Ops> ops = make_ops(options.backend, options.attention);
  Transformer policy(start.config, *ops);
  start_run(options, policy);
  policy.set_params(start.params);
  std::unique_ptr<Transformer> reference;
  if (grpo.kl_coef > 0) {
    reference.reset(new Transformer(start.config, *ops));
    reference->set_params(start.params);
  }
  std::printf("model: %s, %zu parameters | %s: %zu training, %zu evaluation problems | "
              "%d prompts x %d samples per step, %d mini-batches\n",
              start.config.describe().c_str(), policy.num_params(), env->name().c_str(),
              env->size(Split::Train), env->size(Split::Eval), grpo.prompts_per_step,
              grpo.group_size, grpo.minibatches);
  GrpoRun run(run_options, grpo, *env, policy, reference.get());
  const std::pair<double, double> result = run.train();
  finish_run(options, policy, run.trainer());
  // The run's last line. Without --eval-data a JSONL run evaluates on its
  // training problems: say so.
  const bool held_out = !options.task.empty() || !options.eval_data.empty();
  std::printf("%s avg@%d before %.3f after %.3f\n", held_out ? "held-out" : "training-set",
              grpo.eval_samples, result.first, result.second);
  return 0;
}

}  // namespace polaris
