// Each route declares its JSON body once: the OpenAPI document lists the fields and the
// dispatcher refuses any other. Checked for every route with a body, field by field.
#include <gtest/gtest.h>

#include <regex>

#include "server/server_test_support.hpp"

namespace doppel::test {
namespace {

// A value of the documented type (the route may still refuse its content, never its name).
json sample_of(const json& schema) {
  const std::string type = schema.value("type", "");
  if (type == "integer") return 1;
  if (type == "boolean") return true;
  if (type == "array") return json::array({"x"});
  return "x";
}

TEST(ServerApiSchema, EveryDocumentedFieldIsAcceptedAndNoOtherOne) {
  TestServer server;
  ApiClient client = first_account(server);
  const Answer document = client.get("/api/openapi.json");
  ASSERT_EQ(document.status, 200);
  static const std::regex parameter(R"(\{[a-z_]+\})");
  int routes_with_body = 0, fields = 0;
  for (const auto& [path, methods] : document.body["paths"].items()) {
    for (const auto& [method, operation] : methods.items()) {
      const json schema = operation.value("requestBody", json::object())
                              .value("content", json::object())
                              .value("application/json", json::object())
                              .value("schema", json::object());
      if (!schema.contains("properties")) continue;
      ++routes_with_body;
      std::string upper = method;
      for (char& c : upper) c = static_cast<char>(std::toupper(c));
      // Ids that exist nowhere: the body is judged before the record is looked up.
      const std::string url = std::regex_replace(path, parameter, std::string(32, 'b'));
      const Answer unknown = client.request(upper, url, R"({"not_a_field": 1})");
      EXPECT_EQ(unknown.status, 400) << upper << " " << path << ": " << unknown.raw;
      EXPECT_NE(unknown.raw.find("unknown field 'not_a_field'"), std::string::npos)
          << upper << " " << path << ": " << unknown.raw;
      for (const auto& [name, property] : schema["properties"].items()) {
        ++fields;
        const json body = {{name, sample_of(property)}};
        const Answer answer = client.request(upper, url, body.dump());
        EXPECT_EQ(answer.raw.find("unknown field"), std::string::npos)
            << upper << " " << path << " refuses its documented field " << name << ": "
            << answer.raw;
      }
    }
  }
  EXPECT_GE(routes_with_body, 13);
  EXPECT_GE(fields, 30);
}

}  // namespace
}  // namespace doppel::test
