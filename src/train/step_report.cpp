#include "src/train/step_report.h"

#include <cstdio>

namespace polaris {

StepReporter::StepReporter(int total_steps, int print_every, const std::string& log_path,
                           bool append_log)
    : total_steps_(total_steps), print_every_(print_every), log_(log_path, append_log),
      start_(std::chrono::steady_clock::now()) {}

void StepReporter::report(const StepStats& s, const nlohmann::json& extra,
                          const std::vector<std::string>& console_keys) {
  if (first_step_ < 0) {
    first_step_ = s.step - 1;
    start_ = std::chrono::steady_clock::now() -
             std::chrono::microseconds(long(s.ms * 1000));
  }
  const double tokens_per_s = s.ms > 0 ? s.tokens / (s.ms / 1000.0) : 0;
  nlohmann::json record = {{"step", s.step},         {"loss", s.loss},
                           {"lr", s.lr},             {"grad_norm", s.grad_norm},
                           {"tokens_per_s", tokens_per_s}, {"ms", s.ms}};
  for (auto it = extra.begin(); it != extra.end(); ++it) record[it.key()] = it.value();
  log_.write(record);
  if (s.step % print_every_ != 0 && s.step != total_steps_ && s.step != first_step_ + 1) return;
  const double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const int done = s.step - first_step_;
  const double eta = done > 0 ? elapsed / done * (total_steps_ - s.step) : 0;
  std::string line;
  char buf[256];
  // A step that took no optimizer step (GRPO: every group's rewards were
  // equal) has no loss or gradient to show.
  const bool skipped = extra.value("skipped", false);
  if (skipped)
    std::snprintf(buf, sizeof(buf), "step %*d/%d | skipped (no group with a reward signal)",
                  int(std::to_string(total_steps_).size()), s.step, total_steps_);
  else
    std::snprintf(buf, sizeof(buf), "step %*d/%d | loss %.4f | lr %.2e | grad norm %.3f",
                  int(std::to_string(total_steps_).size()), s.step, total_steps_, s.loss, s.lr,
                  s.grad_norm);
  line += buf;
  for (const std::string& key : console_keys) {
    if (!extra.contains(key) || !extra[key].is_number()) continue;
    std::snprintf(buf, sizeof(buf), " | %s %.3g", key.c_str(), extra[key].get<double>());
    line += buf;
  }
  if (skipped)
    std::snprintf(buf, sizeof(buf), " | %.0f ms | ETA %s", s.ms, format_duration(eta).c_str());
  else
    std::snprintf(buf, sizeof(buf), " | %.0f tok/s | %.0f ms | ETA %s", tokens_per_s, s.ms,
                  format_duration(eta).c_str());
  line += buf;
  std::printf("%s\n", line.c_str());
  std::fflush(stdout);
}

void StepReporter::event(const std::string& name, const nlohmann::json& fields) {
  nlohmann::json record = fields;
  record["event"] = name;
  log_.write(record);
  std::string line = name;
  for (auto it = fields.begin(); it != fields.end(); ++it) {
    char buf[128];
    if (it.value().is_number_float())
      std::snprintf(buf, sizeof(buf), " | %s %.4f", it.key().c_str(), it.value().get<double>());
    else
      std::snprintf(buf, sizeof(buf), " | %s %s", it.key().c_str(), it.value().dump().c_str());
    line += buf;
  }
  std::printf("%s\n", line.c_str());
  std::fflush(stdout);
}

}  // namespace polaris
