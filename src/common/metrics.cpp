#include "src/common/metrics.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>

#include "data/json_input.h"
#include "src/common/error.h"

namespace polaris {

MetricsLog::MetricsLog(const std::string& path, bool append) : path_(path) {
  if (path.empty()) return;
  file_ = std::fopen(path.c_str(), append ? "a" : "w");
  require(file_ != nullptr, "--log " + path + ": cannot open for writing: " + std::strerror(errno));
}

MetricsLog::~MetricsLog() {
  if (file_) std::fclose(file_);
}

void MetricsLog::write(const nlohmann::json& record) {
  if (!file_) return;
  std::string line = record.dump() + "\n";
  require(std::fwrite(line.data(), 1, line.size(), file_) == line.size() && std::fflush(file_) == 0,
          "--log " + path_ + ": write failed: " + std::strerror(errno));
}

void MetricsLog::drop_records_after(int step, bool events_at_step) {
  if (!file_) return;
  std::fclose(file_);
  file_ = nullptr;
  std::ifstream in(path_);
  std::string kept, line;
  while (std::getline(in, line)) {
    nlohmann::json record;
    std::string why;
    if (!parse_json_bounded(line, &record, &why) || !record.is_object()) continue;  // torn by a crash
    if (record.contains("step") && record["step"].is_number()) {
      const double at = record["step"].get<double>();
      if (at > step || (events_at_step && at == step && record.contains("event"))) continue;
    }
    kept += line + "\n";
  }
  require(!in.bad(), "--log " + path_ + ": read failed: " + std::strerror(errno));
  in.close();
  const std::string tmp = path_ + ".tmp";
  std::FILE* out = std::fopen(tmp.c_str(), "w");
  require(out != nullptr, "--log " + tmp + ": cannot open for writing: " + std::strerror(errno));
  const bool written = std::fwrite(kept.data(), 1, kept.size(), out) == kept.size() &&
                       std::fflush(out) == 0 && ::fsync(fileno(out)) == 0;
  const int write_errno = errno;
  std::fclose(out);
  if (!written) {
    std::remove(tmp.c_str());
    throw Error("--log " + tmp + ": write failed: " + std::strerror(write_errno));
  }
  if (std::rename(tmp.c_str(), path_.c_str()) != 0) {
    const int rename_errno = errno;
    std::remove(tmp.c_str());
    throw Error("--log " + path_ + ": cannot replace: " + std::strerror(rename_errno));
  }
  file_ = std::fopen(path_.c_str(), "a");
  require(file_ != nullptr, "--log " + path_ + ": cannot open for writing: " + std::strerror(errno));
}

std::string format_bytes(double bytes) {
  static const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  int unit = 0;
  while (bytes >= 1024 && unit < 5) bytes /= 1024, ++unit;
  char buf[32];
  std::snprintf(buf, sizeof(buf), unit == 0 ? "%.0f %s" : "%.1f %s", bytes, units[unit]);
  return buf;
}

std::string format_duration(double seconds) {
  if (seconds < 0) seconds = 0;
  long s = long(seconds + 0.5);
  char buf[32];
  if (s >= 3600) std::snprintf(buf, sizeof(buf), "%ldh %02ldm", s / 3600, (s / 60) % 60);
  else if (s >= 60) std::snprintf(buf, sizeof(buf), "%ldm %02lds", s / 60, s % 60);
  else std::snprintf(buf, sizeof(buf), "%lds", s);
  return buf;
}

}  // namespace polaris
