// Flag tables (src/common/cli.h) and polaris_train's (src/train/train_flags.h):
// defaults come from the table, values are typed and compared in one spelling,
// bad input names the flag, and every row of the train table is well-formed
// (its default parses as its type, its name is unique, it has help).
#include <gtest/gtest.h>

#include <set>
#include <string>
#include <vector>

#include "src/common/cli.h"
#include "src/train/train_flags.h"
#include "tests/test_util.h"

using namespace polaris;

namespace {

const std::vector<FlagSpec> kTable = {
    {"lr", FlagType::number, "X", "3e-4", "learning rate"},
    {"steps", FlagType::count, "N", "100", "steps"},
    {"offset", FlagType::integer, "N", "-2", "an offset"},
    {"name", FlagType::text, "S", "", "a name"},
    {"fast", FlagType::toggle, "", "", "go fast"},
};

Flags parse(std::vector<std::string> args, const std::vector<FlagSpec>& table = kTable) {
  args.insert(args.begin(), "program");
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(&a[0]);
  return Flags(int(argv.size()), argv.data(), table);
}

TEST(Flags, DefaultsComeFromTheTable) {
  const Flags flags = parse({});
  EXPECT_DOUBLE_EQ(flags.number("lr"), 3e-4);
  EXPECT_EQ(flags.count("steps"), 100);
  EXPECT_EQ(flags.integer("offset"), -2);
  EXPECT_EQ(flags.text("name"), "");
  EXPECT_FALSE(flags.has("fast"));
  EXPECT_FALSE(flags.has("lr"));  // a default is not "given"
}

TEST(Flags, ParsesGivenValues) {
  const Flags flags = parse({"--lr", "0.01", "--steps=7", "--fast", "model.bin", "--name", "x"});
  EXPECT_DOUBLE_EQ(flags.number("lr"), 0.01);
  EXPECT_EQ(flags.count("steps"), 7);
  EXPECT_TRUE(flags.has("fast"));
  EXPECT_EQ(flags.text("name"), "x");
  EXPECT_EQ(flags.positional(), std::vector<std::string>{"model.bin"});
}

TEST(Flags, CanonicalSpellingIsTheValueNotTheText) {
  EXPECT_EQ(parse({"--lr", "0.0003"}).canonical("lr"), parse({}).canonical("lr"));
  EXPECT_EQ(parse({"--lr", "3.0e-4"}).canonical("lr"), parse({}).canonical("lr"));
  EXPECT_NE(parse({"--lr", "0.001"}).canonical("lr"), parse({}).canonical("lr"));
  EXPECT_EQ(parse({"--steps", "0100"}).canonical("steps"), "100");
  EXPECT_EQ(parse({"--fast"}).canonical("fast"), "on");
  EXPECT_EQ(parse({}).canonical("fast"), "off");
}

TEST(Flags, BadInputNamesTheFlag) {
  EXPECT_ERROR(parse({"--nope", "1"}), "unknown flag --nope");
  EXPECT_ERROR(parse({"--fast=1"}), "--fast takes no value");
  EXPECT_ERROR(parse({"--steps"}), "--steps needs a value");
  EXPECT_ERROR(parse({"--steps", "0"}).count("steps"), "--steps must be a positive integer");
  EXPECT_ERROR(parse({"--steps", "x"}).count("steps"), "--steps wants an integer");
  EXPECT_ERROR(parse({"--offset", "4294967296"}).integer("offset"), "--offset is out of range");
  EXPECT_ERROR(parse({"--lr", "nan"}).number("lr"), "--lr wants a finite number");
  EXPECT_ERROR(parse({}).required_text("name"), "--name is required");
}

TEST(Flags, ReadingAnUndeclaredFlagIsABug) {
  EXPECT_THROW(parse({}).text("not-declared"), std::logic_error);
}

TEST(Flags, HelpListsEveryRowWithItsDefault) {
  const std::string help = describe_flags(kTable);
  for (const FlagSpec& spec : kTable)
    EXPECT_NE(help.find(std::string("--") + spec.name), std::string::npos) << spec.name;
  EXPECT_NE(help.find("(default 3e-4)"), std::string::npos) << help;
}

TEST(TrainFlags, EveryRowIsWellFormed) {
  std::set<std::string> names;
  const Flags defaults = parse({}, train_flag_table());
  for (const FlagSpec& spec : train_flag_table()) {
    EXPECT_TRUE(names.insert(spec.name).second) << "--" << spec.name << " declared twice";
    EXPECT_NE(std::string(spec.help), "") << spec.name;
    EXPECT_NE(spec.scope & kAnyMode, 0u) << "--" << spec.name << " applies to no mode";
    EXPECT_NO_THROW(defaults.canonical(spec.name)) << "--" << spec.name << "'s default";
    EXPECT_EQ(spec.type == FlagType::toggle, std::string(spec.value_name).empty()) << spec.name;
  }
  const std::string usage = train_usage();
  for (const FlagSpec& spec : train_flag_table())
    EXPECT_NE(usage.find(std::string("  --") + spec.name + " "), std::string::npos) << spec.name;
}

TEST(TrainFlags, AFlagTheModeDoesNotReadIsAnError) {
  auto reject = [](std::vector<std::string> args, const std::string& mode) {
    reject_foreign_flags(parse(args, train_flag_table()), mode);
  };
  EXPECT_ERROR(reject({"--group-size", "4"}, "sft"), "--group-size does not apply to --mode sft");
  EXPECT_ERROR(reject({"--seq", "64"}, "grpo"), "--seq does not apply to --mode grpo");
  EXPECT_ERROR(reject({"--task", "addition", "--data", "x"}, "sft"),
               "--data does not apply with --task");
  EXPECT_ERROR(reject({"--train-examples", "5"}, "sft"),
               "--train-examples applies only with a built-in --task");
  EXPECT_ERROR(reject({"--val-every", "5"}, "pretrain"), "--val-every applies only with --val-data");
  EXPECT_NO_THROW(reject({"--group-size", "4", "--task", "addition"}, "grpo"));
  EXPECT_NO_THROW(reject({"--val-every", "5", "--task", "addition"}, "sft"));
}

}  // namespace
