#include <gtest/gtest.h>

#include "core/error.h"
#include "track/csv.h"

namespace iris::track {
namespace {

TEST(Csv, QuotedFieldsWithCommasQuotesAndLineBreaks) {
  const std::string text =
      "\xEF\xBB\xBF\"a\",\"b\",c\r\n"
      "\"x, y\",\"say \"\"hi\"\"\",plain\r\n"
      "\n"
      "\"two\nlines\",\"\",last\n";
  const CsvTable t = parse_csv(text, "t.csv");
  ASSERT_EQ(t.header, (std::vector<std::string>{"a", "b", "c"}));
  ASSERT_EQ(t.records.size(), 2u);
  EXPECT_EQ(t.records[0].fields, (std::vector<std::string>{"x, y", "say \"hi\"", "plain"}));
  EXPECT_EQ(t.records[0].line, 2u);
  EXPECT_EQ(t.records[1].fields, (std::vector<std::string>{"two\nlines", "", "last"}));
  EXPECT_EQ(t.records[1].line, 4u);  // the blank line 3 is skipped
}

TEST(Csv, WandbModuleListRoundTripsThroughQuoting) {
  const std::string list = R"(["memory_encoder","memory_attention"])";
  const std::string line = csv_line({"run", list});
  EXPECT_EQ(line, "\"run\",\"[\"\"memory_encoder\"\",\"\"memory_attention\"\"]\"\n");
  const CsvTable t = parse_csv("\"h1\",\"h2\"\n" + line, "t.csv");
  EXPECT_EQ(t.records.at(0).fields.at(1), list);
}

TEST(Csv, MalformedInputNamesFileAndLine) {
  try {
    parse_csv("a,b\n1,2\n3\n", "runs.csv");
    FAIL() << "expected InputError";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("runs.csv"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("line 3: 1 fields, but the header has 2"),
              std::string::npos)
        << e.what();
  }
  try {
    parse_csv("a,b\n\"open,2\n", "runs.csv");
    FAIL() << "expected InputError";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("line 2: quoted field never closed"), std::string::npos)
        << e.what();
  }
  EXPECT_THROW(parse_csv("a,b\n\"x\"y,2\n", "runs.csv"), InputError);
  EXPECT_THROW(parse_csv("a,b\nx\"y,2\n", "runs.csv"), InputError);
  EXPECT_THROW(parse_csv("", "runs.csv"), InputError);
}

}  // namespace
}  // namespace iris::track
