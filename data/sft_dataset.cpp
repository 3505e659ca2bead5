// SFT dataset (see sft_dataset.h): JSONL records -> chat messages -> tokens.
#include "data/sft_dataset.h"

#include "data/jsonl_reader.h"
#include "src/common/error.h"

namespace polaris {

namespace {

const std::string& string_field(const nlohmann::json& object, const std::string& key,
                                const std::string& where) {
  require(object.contains(key), "missing \"" + key + "\"" + where);
  const nlohmann::json& value = object[key];
  require(value.is_string(), "\"" + key + "\"" + where + " must be a string, got " +
                                 std::string(value.type_name()));
  return value.get_ref<const std::string&>();
}

SftExample parse_sft_record(const nlohmann::json& record) {
  require(record.is_object(), "expected a JSON object, got " + std::string(record.type_name()));
  SftExample example;
  if (record.contains("messages")) {
    const nlohmann::json& messages = record["messages"];
    require(messages.is_array(), "\"messages\" must be an array, got " + std::string(messages.type_name()));
    require(!messages.empty(), "\"messages\" is empty");
    for (size_t i = 0; i < messages.size(); i++) {
      const std::string where = " in messages[" + std::to_string(i) + "]";
      require(messages[i].is_object(), "messages[" + std::to_string(i) + "] must be an object");
      ChatMessage message;
      message.role = string_field(messages[i], "role", where);
      message.content = string_field(messages[i], "content", where);
      require(message.role == "system" || message.role == "user" || message.role == "assistant",
              "unknown role \"" + message.role + "\"" + where + " (expected system, user or assistant)");
      if (messages[i].contains("reasoning_content") && !messages[i]["reasoning_content"].is_null())
        message.reasoning = string_field(messages[i], "reasoning_content", where);
      example.messages.push_back(std::move(message));
    }
  } else if (record.contains("prompt") || record.contains("response")) {
    if (record.contains("system"))
      example.messages.push_back({"system", string_field(record, "system", ""), std::nullopt});
    example.messages.push_back({"user", string_field(record, "prompt", ""), std::nullopt});
    example.messages.push_back({"assistant", string_field(record, "response", ""), std::nullopt});
  } else {
    throw Error("expected \"messages\", or \"prompt\" and \"response\"");
  }
  bool has_assistant = false;
  for (const ChatMessage& m : example.messages) has_assistant |= m.role == "assistant";
  require(has_assistant, "no assistant message (nothing to train on)");
  return example;
}

}  // namespace

SftDataset SftDataset::load(const std::string& path, bool skip_bad) {
  return read_jsonl_dataset<SftDataset>(path, skip_bad, parse_sft_record);
}

std::vector<PackSequence> tokenize_sft(const Tokenizer& tokenizer, const SftDataset& dataset) {
  std::vector<PackSequence> sequences;
  sequences.reserve(dataset.examples.size());
  for (const SftExample& example : dataset.examples) {
    RenderedChat chat = render_chat(tokenizer, example.messages);
    PackSequence sequence;
    sequence.ids = std::move(chat.ids);
    sequence.weights.assign(chat.assistant_mask.begin(), chat.assistant_mask.end());
    sequences.push_back(std::move(sequence));
  }
  return sequences;
}

}  // namespace polaris
