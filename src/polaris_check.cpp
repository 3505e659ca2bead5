// polaris_check FIXTURE_DIR [--backend cpu|cuda]: the whole model against a
// reference dump made with Hugging Face transformers (tests/fixtures/*/,
// format in tests/fixtures/README.md).
//
// It imports FIXTURE_DIR/hf_model, runs forward and backward on the dump's
// input_ids, and prints the largest error of the logits, the loss, every
// parameter gradient (relative to that tensor's largest reference value) and
// the greedy continuation; it exits 1 when any is past tolerance.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <limits>

#include <nlohmann/json.hpp>

#include "data/json_input.h"
#include "model/hf_import.h"
#include "model/safetensors.h"
#include "model/scheduler.h"
#include "src/common/backend.h"
#include "src/common/cli.h"
#include "src/common/threads.h"

using namespace polaris;

namespace {

// Tolerances: fp32 on the CPU reproduces transformers to ~1e-6; bf16 on the
// GPU is looser by the format's 8-bit mantissa.
struct Tolerance {
  double logits, loss, gradient;
};

Tolerance tolerance_for(const std::string& backend) {
  if (backend == "cpu") return {1e-4, 1e-4, 1e-3};
  return {5e-2, 2e-2, 5e-2};
}

// expected.json's fields, checked before any work so a malformed dump ends
// in one line naming the file and field.
struct Expected {
  double loss = 0;
  std::vector<int32_t> prompt, greedy_continuation;
};

Expected read_expected(const std::string& path, int vocab_size) {
  // Bounded (data/json_input.h): size and nesting limits named in the error.
  nlohmann::json json = read_json_file(path, kJsonConfigMaxBytes, "an expected.json", "not valid JSON");
  require(json.is_object(), path + ": want a JSON object");
  Expected expected;
  require(json.contains("loss") && json["loss"].is_number() &&
              std::isfinite(json["loss"].get<double>()),
          path + ": field \"loss\" must be a finite number");
  expected.loss = json["loss"].get<double>();
  auto token_list = [&](const char* field) {
    require(json.contains(field) && json[field].is_array() && !json[field].empty(),
            path + ": field \"" + field + "\" must be a non-empty array of token ids");
    std::vector<int32_t> ids;
    for (const nlohmann::json& id : json[field]) {
      require(id.is_number_integer() && id.get<long long>() >= 0 &&
                  id.get<long long>() < vocab_size,
              path + ": field \"" + field + "\" holds " + id.dump() +
                  ", not a token id below the vocabulary size " + std::to_string(vocab_size));
      ids.push_back(id.get<int32_t>());
    }
    return ids;
  };
  expected.prompt = token_list("prompt");
  expected.greedy_continuation = token_list("greedy_continuation");
  return expected;
}

// The largest |a - b|, infinite when either side holds a NaN or an infinity:
// std::max would skip a NaN, and a kernel writing NaN must not PASS.
double max_abs_difference(const float* a, const float* b, size_t n) {
  double worst = 0;
  for (size_t i = 0; i < n; ++i) {
    const double difference = std::fabs(double(a[i]) - double(b[i]));
    if (!std::isfinite(difference)) return std::numeric_limits<double>::infinity();
    worst = std::max(worst, difference);
  }
  return worst;
}

int check(const std::string& dir, const std::string& backend, const std::string& attention) {
  const Tolerance tol = tolerance_for(backend);
  LoadedModel hf = read_hf_dir(dir + "/hf_model");
  SafetensorsFile forward_file(dir + "/forward.safetensors");
  const SafetensorsEntry& ids_entry = forward_file.entry("input_ids");
  require(ids_entry.shape.size() == 2,
          dir + "/forward.safetensors: input_ids must be [B, T]");
  const int B = int(ids_entry.shape[0]), T = int(ids_entry.shape[1]);
  std::vector<int32_t> ids;
  for (int64_t id : forward_file.read_i64("input_ids")) {
    require(id >= 0 && id < hf.config.vocab_size,
            dir + "/forward.safetensors: input_ids holds " + std::to_string(id) +
                ", outside the model's vocabulary of " + std::to_string(hf.config.vocab_size));
    ids.push_back(int32_t(id));
  }
  std::vector<float> reference_logits = forward_file.read_f32("logits");
  std::vector<float> reference_grads =
      hf_named_tensors_to_flat(hf.config, HfTensors(dir + "/grads.safetensors"));
  const Expected expected = read_expected(dir + "/expected.json", hf.config.vocab_size);

  std::unique_ptr<Ops> ops = make_ops(backend, attention);
  Transformer model(hf.config, *ops);
  model.set_params(hf.params);
  std::printf("%s: %s, %zu parameters, B=%d T=%d, backend %s\n", dir.c_str(),
              hf.config.describe().c_str(), model.num_params(), B, T, ops->name().c_str());
  bool ok = true;
  auto verdict = [&](bool pass) {
    ok = ok && pass;
    return pass ? "ok" : "FAIL";
  };

  Batch batch = Batch::from_token_rows(ids, B, T);
  std::vector<float> logits = model.forward_logits(batch);
  require(logits.size() == reference_logits.size(),
          dir + "/forward.safetensors: logits shape does not match the model's vocabulary");
  const double logit_error =
      max_abs_difference(logits.data(), reference_logits.data(), logits.size());
  std::printf("  logits    max abs error %.3e  (tolerance %.0e)  %s\n", logit_error, tol.logits,
              verdict(logit_error <= tol.logits));

  // The reference loss is the plain mean over the B*(T-1) predicted tokens.
  const double targets = double(B) * (T - 1);
  model.zero_grads();
  LossOutputs out = model.forward_backward(batch, float(1.0 / targets));
  const double loss = out.mean_loss();  // every target has weight 1
  const double loss_error = std::fabs(loss - expected.loss);
  std::printf("  loss      %.7f vs %.7f, error %.3e  %s\n", loss, expected.loss, loss_error,
              verdict(loss_error <= tol.loss));

  std::vector<float> grads = model.get_grads();
  // A tensor whose true gradient is zero (GPT-2's key bias: adding a
  // constant to every key leaves the softmax unchanged) holds only rounding
  // noise in both dumps, so errors are relative to at least 1e-4 of the
  // largest gradient of the model.
  double global_max = 0;
  for (float g : reference_grads) global_max = std::max(global_max, double(std::fabs(g)));
  const double floor = 1e-4 * global_max;
  double worst = 0;
  std::string worst_name;
  for (const TensorInfo& t : model.layout().tensors) {
    double max_ref = 0;
    for (size_t i = t.offset; i < t.offset + t.numel; ++i)
      max_ref = std::max(max_ref, double(std::fabs(reference_grads[i])));
    const double max_err =
        max_abs_difference(grads.data() + t.offset, reference_grads.data() + t.offset, t.numel);
    const double relative = max_err / std::max({max_ref, floor, 1e-30});
    if (relative > worst || worst_name.empty()) worst = relative, worst_name = t.name;
    std::printf("  gradient  %-32s max abs error %.3e, relative %.3e  %s\n", t.name.c_str(),
                max_err, relative, relative <= tol.gradient ? "ok" : "FAIL");
  }
  std::printf("  gradients %zu tensors, worst relative error %.3e (%s)  (tolerance %.0e)  %s\n",
              model.layout().tensors.size(), worst, worst_name.c_str(), tol.gradient,
              verdict(worst <= tol.gradient));

  const std::vector<int32_t>& prompt = expected.prompt;
  const std::vector<int32_t>& continuation = expected.greedy_continuation;
  SamplingParams greedy;
  greedy.temperature = 0.f;
  greedy.max_new_tokens = int(continuation.size());
  std::vector<Completion> generated = generate(model, {prompt}, greedy);
  size_t matching = 0;
  while (matching < continuation.size() && matching < generated[0].tokens.size() &&
         generated[0].tokens[matching] == continuation[matching])
    ++matching;
  std::printf("  greedy    %zu/%zu tokens match  %s\n", matching, continuation.size(),
              verdict(matching == continuation.size()));
  std::printf("%s\n", ok ? "PASS" : "FAIL");
  return ok ? 0 : 1;
}

// Each flag once (README.md's polaris_check table lists the same ones).
const std::vector<FlagSpec> kFlags = {
    {"backend", FlagType::text, "auto|cpu|cuda", "auto", "the ops to check"},
    {"attention", FlagType::text, "flash|cudnn|simple", "flash", "the CUDA backend's attention"},
};

}  // namespace

int main(int argc, char** argv) {
  polaris::configure_openmp(argv);  // first: before the OpenMP runtime reads its settings
  return run_main([&] {
    const std::string usage =
        "usage: polaris_check FIXTURE_DIR [flags]\n"
        "  FIXTURE_DIR holds hf_model/, forward.safetensors, grads.safetensors and expected.json\n"
        "  (tests/fixtures/README.md); exit 1 past tolerance\n\nflags:\n" +
        describe_flags(kFlags);
    if (wants_help(argc, argv)) {
      std::fputs(usage.c_str(), stdout);
      return 0;
    }
    const Flags flags(argc, argv, kFlags);
    require(flags.positional().size() == 1, "give one FIXTURE_DIR (usage: polaris_check --help)");
    return check(flags.positional()[0], resolve_backend(flags.text("backend")),
                 flags.text("attention"));
  });
}
