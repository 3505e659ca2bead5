// RL dataset (see rl_dataset.h): JSONL records -> prompts + verifier references.
#include "data/rl_dataset.h"

#include "data/jsonl_reader.h"
#include "src/common/error.h"

namespace polaris {

namespace {

std::string type_of(const nlohmann::json& value) { return value.type_name(); }

nlohmann::json integer_field(const nlohmann::json& value, const std::string& key) {
  require(value.is_number_integer(), "\"" + key + "\" must be an integer, got " +
                                         (value.is_number() ? value.dump() : type_of(value)));
  return value;
}

RlExample parse_rl_record(const nlohmann::json& record) {
  require(record.is_object(), "expected a JSON object, got " + type_of(record));
  RlExample example;
  example.record = record;
  const char* prompt_key = record.contains("problem") ? "problem" : "prompt";
  require(record.contains(prompt_key), "missing \"problem\" (or \"prompt\")");
  require(record[prompt_key].is_string(),
          "\"" + std::string(prompt_key) + "\" must be a string, got " + type_of(record[prompt_key]));
  example.prompt = record[prompt_key].get<std::string>();

  const char* numbers_key = record.contains("numbers") ? "numbers" : "nums";
  bool has_countdown = record.contains(numbers_key) || record.contains("target");
  if (record.contains("kind")) {
    require(record["kind"].is_string(), "\"kind\" must be a string, got " + type_of(record["kind"]));
    example.kind = record["kind"].get<std::string>();
    require(example.kind == "math" || example.kind == "countdown",
            "unknown kind \"" + example.kind + "\" (expected math or countdown)");
  } else {
    example.kind = has_countdown ? "countdown" : "math";
  }

  if (example.kind == "countdown") {
    require(record.contains(numbers_key), "missing \"numbers\" for a countdown record");
    require(record.contains("target"), "missing \"target\" for a countdown record");
    const nlohmann::json& numbers = record[numbers_key];
    require(numbers.is_array(), "\"" + std::string(numbers_key) + "\" must be an array, got " + type_of(numbers));
    require(!numbers.empty(), "\"" + std::string(numbers_key) + "\" is empty");
    nlohmann::json checked = nlohmann::json::array();
    for (const auto& n : numbers) checked.push_back(integer_field(n, numbers_key));
    example.reference = {{"numbers", checked}, {"target", integer_field(record["target"], "target")}};
  } else {
    require(record.contains("answer"), "missing \"answer\"");
    const nlohmann::json& answer = record["answer"];
    require(answer.is_string() || answer.is_number(),
            "\"answer\" must be a string or number, got " + type_of(answer));
    example.reference = answer;
  }

  if (record.contains("pass_rate") && !record["pass_rate"].is_null()) {
    const nlohmann::json& rate = record["pass_rate"];
    require(rate.is_number(), "\"pass_rate\" must be a number, got " + type_of(rate));
    double value = rate.get<double>();
    require(value >= 0.0 && value <= 1.0, "\"pass_rate\" must be in [0, 1], got " + rate.dump());
    example.pass_rate = value;
  }
  return example;
}

}  // namespace

RlDataset RlDataset::load(const std::string& path, bool skip_bad) {
  return read_jsonl_dataset<RlDataset>(path, skip_bad, parse_rl_record);
}

std::vector<ChatMessage> rl_prompt_messages(const RlExample& example, const std::string& system_prompt) {
  std::vector<ChatMessage> messages;
  if (!system_prompt.empty()) messages.push_back({"system", system_prompt, std::nullopt});
  messages.push_back({"user", example.prompt, std::nullopt});
  return messages;
}

}  // namespace polaris
