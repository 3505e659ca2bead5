// Per-step reporting shared by every training loop: a console line
// (step, loss, lr, grad norm, tokens/s, ms, ETA) every print_every steps and
// a JSONL record every step (DESIGN.md's metrics contract).
#pragma once
#include <chrono>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "src/common/metrics.h"
#include "src/train/trainer.h"

namespace polaris {

class StepReporter {
 public:
  // append_log: a resumed run continues its --log; call resume_at once the
  // checkpoint is known.
  StepReporter(int total_steps, int print_every, const std::string& log_path,
               bool append_log = false);
  // `extra` keys join the record; those named in console_keys also join the
  // console line.
  void report(const StepStats& stats, const nlohmann::json& extra = nlohmann::json::object(),
              const std::vector<std::string>& console_keys = {});
  // A resumed run continues after checkpoint_step (-1: no checkpoint was
  // found, so the run starts over): the log's later records are dropped.
  // final_events: the events at checkpoint_step came after the checkpoint
  // (GRPO's last evaluation follows the last save) and will be written again.
  void resume_at(int checkpoint_step, bool final_events = false) {
    log_.drop_records_after(checkpoint_step, final_events);
  }
  // Validation and other events: a console line and a record with "event".
  void event(const std::string& name, const nlohmann::json& fields);

 private:
  int total_steps_, print_every_;
  MetricsLog log_;
  std::chrono::steady_clock::time_point start_;
  int first_step_ = -1;
};

}  // namespace polaris
