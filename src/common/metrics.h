// Metrics: one JSON object per line (JSONL), so any step's numbers plot.
//
// Every training program writes one record per optimizer step to --log
// (keys at least step, loss, lr, grad_norm, tokens_per_s, ms; RL adds
// reward, accuracy, response_len, kl, clip_frac, entropy). The file is
// flushed after each record so a crash loses at most the step in flight.
#pragma once
#include <cstdio>
#include <string>

#include <nlohmann/json.hpp>

namespace polaris {

class MetricsLog {
 public:
  MetricsLog() = default;
  // Empty path: no log. append: continue an existing log (a resumed run)
  // instead of starting it afresh.
  explicit MetricsLog(const std::string& path, bool append = false);
  ~MetricsLog();
  MetricsLog(const MetricsLog&) = delete;
  MetricsLog& operator=(const MetricsLog&) = delete;
  void write(const nlohmann::json& record);
  // A resumed run restarts at `step`: records of later steps (written before
  // a crash, after the checkpoint) and a torn last line are dropped, so the
  // log reads as if the run had never stopped. The file is rewritten beside
  // itself and renamed over, so a crash here loses nothing.
  // events_at_step: also drop event records (those with "event") at `step`
  // itself, for an event written after that step's checkpoint.
  void drop_records_after(int step, bool events_at_step = false);

 private:
  std::FILE* file_ = nullptr;
  std::string path_;
};

// "1m 05s", "42s": for ETAs.
std::string format_duration(double seconds);
// "512 B", "3.4 MiB", "2.1 TiB": for memory figures.
std::string format_bytes(double bytes);

}  // namespace polaris
