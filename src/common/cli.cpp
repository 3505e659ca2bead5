#include "src/common/cli.h"

#include <cerrno>
#include <climits>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace polaris {

namespace {

long long parse_integer(const std::string& name, const std::string& text) {
  char* end = nullptr;
  errno = 0;  // strtoll signals overflow only through errno (and clamps the value)
  long long v = std::strtoll(text.c_str(), &end, 10);
  require(!text.empty() && *end == '\0', "flag --" + name + " wants an integer, got '" + text + "'");
  require(errno != ERANGE, "flag --" + name + " is out of range: '" + text + "'");
  return v;
}

// int-sized, so --warmup-steps 4294967296 is an error, not a silent 0.
int parse_int32(const std::string& name, const std::string& text) {
  const long long v = parse_integer(name, text);
  require(v >= INT32_MIN && v <= INT32_MAX, "flag --" + name + " is out of range: '" + text + "'");
  return int(v);
}

int parse_count(const std::string& name, const std::string& text) {
  const long long v = parse_integer(name, text);
  require(v > 0 && v <= INT32_MAX,
          "flag --" + name + " must be a positive integer, got '" + text + "'");
  return int(v);
}

double parse_number(const std::string& name, const std::string& text) {
  char* end = nullptr;
  double v = std::strtod(text.c_str(), &end);
  require(!text.empty() && *end == '\0', "flag --" + name + " wants a number, got '" + text + "'");
  // No flag here means infinity or NaN, and one slipping through would
  // silently switch a comparison-guarded feature off (--grad-clip nan).
  require(std::isfinite(v), "flag --" + name + " wants a finite number, got '" + text + "'");
  return v;
}

}  // namespace

Flags::Flags(int argc, char** argv, const std::vector<FlagSpec>& table) : table_(&table) {
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
    const FlagSpec* spec = nullptr;
    for (const FlagSpec& row : table)
      if (name == row.name) spec = &row;
    require(spec != nullptr,
            "unknown flag --" + name + " (--help lists the flags this program takes)");
    if (spec->type == FlagType::toggle) {
      require(!inline_value, "flag --" + name + " takes no value");
      values_[name] = "1";
    } else {
      if (!inline_value) {
        require(i + 1 < argc, "flag --" + name + " needs a value");
        value = argv[++i];
      }
      values_[name] = value;
    }
  }
}

const FlagSpec& Flags::spec(const std::string& name) const {
  if (table_)
    for (const FlagSpec& spec : *table_)
      if (name == spec.name) return spec;
  // A read of an undeclared flag is a bug in the program, not bad input.
  throw std::logic_error("flag --" + name + " is read but not declared");
}

bool Flags::has(const std::string& name) const { return values_.count(name) > 0; }

std::string Flags::text(const std::string& name) const {
  const FlagSpec& s = spec(name);
  auto it = values_.find(name);
  return it == values_.end() ? s.fallback : it->second;
}

std::string Flags::required_text(const std::string& name) const {
  spec(name);
  require(has(name), "flag --" + name + " is required");
  return text(name);
}

int Flags::integer(const std::string& name) const { return parse_int32(name, text(name)); }

int Flags::count(const std::string& name) const { return parse_count(name, text(name)); }

double Flags::number(const std::string& name) const { return parse_number(name, text(name)); }

std::string Flags::canonical(const std::string& name) const {
  const FlagSpec& s = spec(name);
  const std::string value = text(name);
  if (s.type == FlagType::toggle) return has(name) ? "on" : "off";
  if (value.empty()) return "";
  switch (s.type) {
    case FlagType::integer: return std::to_string(parse_int32(name, value));
    case FlagType::count: return std::to_string(parse_count(name, value));
    case FlagType::number: {
      // 7 significant digits, a float's precision: the value the run uses.
      char out[32];
      std::snprintf(out, sizeof(out), "%.7g", parse_number(name, value));
      return out;
    }
    default: return value;
  }
}

std::vector<FlagSpec> join_flags(std::initializer_list<std::vector<FlagSpec>> parts) {
  std::vector<FlagSpec> table;
  for (const std::vector<FlagSpec>& part : parts) table.insert(table.end(), part.begin(), part.end());
  return table;
}

bool wants_help(int argc, char** argv) {
  for (int i = 1; i < argc; ++i)
    if (!std::strcmp(argv[i], "--help") || !std::strcmp(argv[i], "-h")) return true;
  return false;
}

std::string describe_flags(const std::vector<FlagSpec>& table,
                           const std::function<std::string(const FlagSpec&)>& note) {
  std::string out;
  for (const FlagSpec& spec : table) {
    std::string left = std::string("  --") + spec.name;
    if (spec.type != FlagType::toggle) left += std::string(" ") + spec.value_name;
    if (left.size() < 30) left.resize(30, ' ');
    std::string line = left + "  " + spec.help;
    if (*spec.fallback) line += std::string(" (default ") + spec.fallback + ")";
    const std::string extra = note ? note(spec) : "";
    if (!extra.empty()) line += " [" + extra + "]";
    out += line + "\n";
  }
  return out;
}

namespace {
void (*g_fatal_reporter)(const std::string&) = nullptr;
}  // namespace

void set_fatal_reporter(void (*reporter)(const std::string& line)) { g_fatal_reporter = reporter; }

int run_main(const std::function<int()>& body) {
  std::string line;
  try {
    return body();
  } catch (const Error& e) {
    line = std::string("error: ") + e.what();
  } catch (const std::exception& e) {
    line = std::string("error: internal: ") + e.what();
  }
  if (g_fatal_reporter)
    g_fatal_reporter(line);
  else
    std::fprintf(stderr, "%s\n", line.c_str());
  return 1;
}

}  // namespace polaris
