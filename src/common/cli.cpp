#include "src/common/cli.h"

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <thread>

namespace polaris {

Flags::Flags(int argc, char** argv, const std::set<std::string>& value_flags,
             const std::set<std::string>& switch_flags) {
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg.size() < 3 || arg.compare(0, 2, "--") != 0) {
      positional_.push_back(arg);
      continue;
    }
    std::string name = arg.substr(2), value;
    size_t eq = name.find('=');
    bool inline_value = eq != std::string::npos;
    if (inline_value) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
    }
    if (switch_flags.count(name)) {
      require(!inline_value, "flag --" + name + " takes no value");
      values_[name] = "1";
    } else if (value_flags.count(name)) {
      if (!inline_value) {
        require(i + 1 < argc, "flag --" + name + " needs a value");
        value = argv[++i];
      }
      values_[name] = value;
    } else {
      throw Error("unknown flag --" + name + " (see the README for the flags this program takes)");
    }
  }
}

bool Flags::has(const std::string& name) const { return values_.count(name) > 0; }

std::string Flags::get(const std::string& name, const std::string& fallback) const {
  auto it = values_.find(name);
  return it == values_.end() ? fallback : it->second;
}

std::string Flags::get_required(const std::string& name) const {
  auto it = values_.find(name);
  require(it != values_.end(), "flag --" + name + " is required");
  return it->second;
}

long long Flags::get_int(const std::string& name, long long fallback) const {
  auto it = values_.find(name);
  if (it == values_.end()) return fallback;
  char* end = nullptr;
  errno = 0;  // strtoll signals overflow only through errno (and clamps the value)
  long long v = std::strtoll(it->second.c_str(), &end, 10);
  require(!it->second.empty() && *end == '\0',
          "flag --" + name + " wants an integer, got '" + it->second + "'");
  require(errno != ERANGE, "flag --" + name + " is out of range: '" + it->second + "'");
  return v;
}

int Flags::get_int32(const std::string& name, int fallback) const {
  const long long v = get_int(name, fallback);
  require(v >= INT32_MIN && v <= INT32_MAX,
          "flag --" + name + " is out of range: '" + get(name, "") + "'");
  return int(v);
}

int Flags::get_positive_int(const std::string& name, int fallback) const {
  const long long v = get_int(name, fallback);
  require(v > 0 && v <= INT32_MAX,
          "flag --" + name + " must be a positive integer, got '" + get(name, "") + "'");
  return int(v);
}

double Flags::get_double(const std::string& name, double fallback) const {
  auto it = values_.find(name);
  if (it == values_.end()) return fallback;
  char* end = nullptr;
  double v = std::strtod(it->second.c_str(), &end);
  require(!it->second.empty() && *end == '\0',
          "flag --" + name + " wants a number, got '" + it->second + "'");
  // No flag here means infinity or NaN, and one slipping through would
  // silently switch a comparison-guarded feature off (--grad-clip nan).
  require(std::isfinite(v), "flag --" + name + " wants a finite number, got '" + it->second + "'");
  return v;
}

namespace {
void (*g_fatal_hook)() = nullptr;
}  // namespace

void set_fatal_hook(void (*hook)()) { g_fatal_hook = hook; }

namespace {

// This process's rank under mpirun or srun, 0 without one.
int launcher_rank() {
  for (const char* name : {"OMPI_COMM_WORLD_RANK", "PMI_RANK", "SLURM_PROCID"})
    if (const char* value = std::getenv(name)) return std::atoi(value);
  return 0;
}

}  // namespace

int run_main(const std::function<int()>& body) {
  std::string line;
  try {
    return body();
  } catch (const Error& e) {
    line = std::string("error: ") + e.what();
  } catch (const std::exception& e) {
    line = std::string("error: internal: ") + e.what();
  }
  // Under mpirun, a rank other than 0 waits before printing: an error every
  // rank hits (a missing flag, a model file that is not there) then ends
  // the job through rank 0 (its abort, or its exit status, makes mpirun end
  // this rank meanwhile), so `mpirun -np 8` prints it once, not eight times.
  // An error of this rank alone is printed after the wait.
  if (launcher_rank() > 0) std::this_thread::sleep_for(std::chrono::seconds(2));
  std::fprintf(stderr, "%s\n", line.c_str());
  if (g_fatal_hook) g_fatal_hook();
  return 1;
}

}  // namespace polaris
