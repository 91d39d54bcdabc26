#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include <sstream>

#include "core/progress.h"

namespace iris {
namespace {

TEST(Progress, FormatsDurations) {
  EXPECT_EQ(Progress::format_duration(0), "00:00");
  EXPECT_EQ(Progress::format_duration(75.4), "01:15");
  EXPECT_EQ(Progress::format_duration(3723), "1:02:03");
  EXPECT_EQ(Progress::format_duration(-1), "--:--");
  EXPECT_EQ(Progress::format_duration(NAN), "--:--");
}

TEST(Progress, WithoutATerminalLogsPlainLinesWithRateAndEta) {
  std::ostringstream captured;
  auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(captured);
  auto previous = spdlog::default_logger();
  spdlog::set_default_logger(std::make_shared<spdlog::logger>("capture", sink));
  {
    Progress progress("epoch", 4, "batch");
    progress.set_plain(0.0);  // a line on every advance
    for (int i = 0; i < 4; ++i) progress.advance(1, "loss 0.5");
  }
  spdlog::set_default_logger(previous);
  const std::string text = captured.str();
  EXPECT_NE(text.find("epoch: 1/4"), std::string::npos) << text;
  EXPECT_NE(text.find("epoch: 4/4"), std::string::npos) << text;
  EXPECT_NE(text.find("batch/s"), std::string::npos) << text;
  EXPECT_NE(text.find("eta"), std::string::npos) << text;
  EXPECT_NE(text.find("loss 0.5"), std::string::npos) << text;
  EXPECT_EQ(text.find('\r'), std::string::npos) << "no terminal redraws in plain mode";
  // The final state is not logged twice.
  std::size_t count = 0;
  for (std::size_t pos = text.find("4/4"); pos != std::string::npos; pos = text.find("4/4", pos + 1)) ++count;
  EXPECT_EQ(count, 1u) << text;
}

}  // namespace
}  // namespace iris
