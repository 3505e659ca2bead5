// Command-line helpers shared by every program.
//
// Flags are "--name value" or "--name" (boolean). A program declares what it
// accepts; anything else ends in one line naming the flag ("unknown flag
// --foo"). run_main turns a thrown polaris::Error into "error: <line>" on
// stderr and exit status 1, so no program crashes on bad input.
#pragma once
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "src/common/error.h"

namespace polaris {

class Flags {
 public:
  // value_flags take one argument; switch_flags take none.
  Flags(int argc, char** argv, const std::set<std::string>& value_flags,
        const std::set<std::string>& switch_flags);

  bool has(const std::string& name) const;
  std::string get(const std::string& name, const std::string& fallback) const;
  std::string get_required(const std::string& name) const;
  long long get_int(const std::string& name, long long fallback) const;
  // get_int for flags stored in an int: a value beyond its range is an error,
  // not a silent wrap (--warmup-steps 4294967296 must not become 0).
  int get_int32(const std::string& name, int fallback) const;
  // get_int32 for counts and sizes: anything below 1 is an error too.
  int get_positive_int(const std::string& name, int fallback) const;
  double get_double(const std::string& name, double fallback) const;
  bool get_switch(const std::string& name) const { return has(name); }
  // Arguments that are not flags, in order.
  const std::vector<std::string>& positional() const { return positional_; }

 private:
  std::map<std::string, std::string> values_;
  std::vector<std::string> positional_;
};

// Runs body, printing "error: <message>" and returning 1 on polaris::Error
// (and on any other std::exception, which would be a bug, with "internal").
// Under mpirun, ranks other than 0 print 2 s late, so an error every rank
// hits is printed once (rank 0's failure ends the job meanwhile).
int run_main(const std::function<int()>& body);

// A function run_main calls after printing a fatal error, before returning 1.
// MpiComm (optim/comm.h) registers MPI_Abort here so one failing rank ends
// the whole multi-process job instead of leaving the others blocked.
void set_fatal_hook(void (*hook)());

}  // namespace polaris
