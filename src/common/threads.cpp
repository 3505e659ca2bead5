#include "src/common/threads.h"

#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

namespace polaris {

namespace {

// A cgroup v2 CPU quota ("cpu.max": "QUOTA PERIOD", or "max PERIOD"), in
// cores rounded up; 0 when there is none.
int cgroup_cpu_limit() {
  std::ifstream file("/sys/fs/cgroup/cpu.max");
  std::string quota;
  double period = 0;
  if (!(file >> quota >> period) || quota == "max" || period <= 0) return 0;
  const double cores = std::atof(quota.c_str()) / period;
  return cores > 0 ? int(std::ceil(cores)) : 0;
}

}  // namespace

int usable_cores() {
  cpu_set_t set;
  CPU_ZERO(&set);
  int cores = sched_getaffinity(0, sizeof(set), &set) == 0 ? CPU_COUNT(&set) : 0;
  const long online = sysconf(_SC_NPROCESSORS_ONLN);
  if (cores <= 0) cores = online > 0 ? int(online) : 1;
  // Ranks that mpirun did not bind all see every core: share them.
  const char* local_ranks = std::getenv("OMPI_COMM_WORLD_LOCAL_SIZE");
  if (local_ranks && cores == online) cores /= std::max(1, std::atoi(local_ranks));
  const int quota = cgroup_cpu_limit();
  if (quota > 0) cores = std::min(cores, quota);
  return std::max(1, cores);
}

void configure_openmp(char** argv) {
  bool changed = false;
  if (!std::getenv("OMP_NUM_THREADS")) {
    setenv("OMP_NUM_THREADS", std::to_string(usable_cores()).c_str(), 1);
    changed = true;
  }
  if (!std::getenv("OMP_WAIT_POLICY")) {
    setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
    changed = true;
  }
  // Both are set now, so the program run again returns here at once.
  if (changed) execv("/proc/self/exe", argv);
}

}  // namespace polaris
