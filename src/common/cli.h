// Command-line helpers shared by every program.
//
// Flags are "--name value" or "--name" (a switch). A program declares each
// flag it accepts once, in a table of FlagSpec rows: the name, the value's
// type, its default, the help line, and program-defined scope and check
// bits (polaris_train: the modes a flag applies to, whether ranks and a
// resumed run must agree on it). Parsing, the typed getters' defaults and
// --help all read that table, so adding a flag is adding a row. Anything
// not in the table ends in one line naming the flag ("unknown flag --foo").
// run_main turns a thrown polaris::Error into "error: <line>" on stderr and
// exit status 1, so no program crashes on bad input.
#pragma once
#include <functional>
#include <initializer_list>
#include <map>
#include <string>
#include <vector>

#include "src/common/error.h"

namespace polaris {

enum class FlagType {
  text,     // any string
  integer,  // a whole number that fits an int
  count,    // a whole number >= 1
  number,   // a finite floating-point number
  toggle,   // a switch: present or not, no value
};

struct FlagSpec {
  const char* name;          // without the leading "--"
  FlagType type;
  const char* value_name;    // the value in --help ("N", "FILE"); "" for a toggle
  const char* fallback;      // the default, read exactly as a given value; "" = none
  const char* help;          // one line; a computed default is described here
  unsigned scope = 0;        // program-defined (polaris_train: modes, task, validation)
  unsigned checks = 0;       // program-defined (polaris_train: same on ranks, on resume)
};

class Flags {
 public:
  // Every argument that starts with "--" must name a row of `table`, which
  // must outlive the Flags.
  Flags(int argc, char** argv, const std::vector<FlagSpec>& table);

  // Given on the command line (a toggle: present).
  bool has(const std::string& name) const;
  // The value given, else the table's default ("" when none). Each getter
  // checks the type and names the flag in its error.
  std::string text(const std::string& name) const;
  std::string required_text(const std::string& name) const;  // Error when not given
  int integer(const std::string& name) const;
  int count(const std::string& name) const;
  double number(const std::string& name) const;
  // The value in one spelling per meaning ("3e-4", "0.0003" -> "0.0003"; a
  // toggle "on"/"off"), so two runs can compare what they were given.
  std::string canonical(const std::string& name) const;
  const FlagSpec& spec(const std::string& name) const;
  const std::vector<FlagSpec>& table() const { return *table_; }
  // Arguments that are not flags, in order.
  const std::vector<std::string>& positional() const { return positional_; }

 private:
  const std::vector<FlagSpec>* table_;
  std::map<std::string, std::string> values_;
  std::vector<std::string> positional_;
};

// A flag table made of parts (rows shared between programs, e.g.
// sampling_flags.h), in order.
std::vector<FlagSpec> join_flags(std::initializer_list<std::vector<FlagSpec>> parts);

// True when argv holds --help or -h (checked before parsing, so --help
// works whatever else was given).
bool wants_help(int argc, char** argv);

// One "  --name VALUE  help (default: X)" line per row, with `note(spec)`
// (e.g. the modes) appended when it returns text.
std::string describe_flags(const std::vector<FlagSpec>& table,
                           const std::function<std::string(const FlagSpec&)>& note = nullptr);

// Runs body, reporting "error: <message>" and returning 1 on polaris::Error
// (and on any other std::exception, which would be a bug, with "internal").
// Under mpirun, ranks other than 0 print 2 s late, so an error every rank
// hits is printed once (rank 0's failure ends the job meanwhile).
int run_main(const std::function<int()>& body);

// How run_main reports a fatal error line: by default, printed on stderr.
// MpiComm (optim/comm.h) installs one that first agrees with the other
// ranks, so a job whose ranks all fail prints the line once, and one whose
// ranks fail alone names the rank and aborts the job.
void set_fatal_reporter(void (*reporter)(const std::string& line));

}  // namespace polaris
