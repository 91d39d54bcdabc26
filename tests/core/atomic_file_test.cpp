#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/atomic_file.h"
#include "core/error.h"
#include "test_util.h"

namespace iris {
namespace {

std::size_t count_files(const fs::path& dir) {
  std::size_t n = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir)) ++n;
  return n;
}

TEST(AtomicFile, WritesWholeFileAndLeavesNoTemporary) {
  test::TempDir dir;
  const auto path = dir / "nested/out.txt";
  write_file_atomic(path, "first");
  write_file_atomic(path, "second version");
  EXPECT_EQ(read_file(path), "second version");
  EXPECT_EQ(count_files(path.parent_path()), 1u);
}

TEST(AtomicFile, UncommittedWriteKeepsTheOldFile) {
  test::TempDir dir;
  const auto path = dir / "summary.json";
  write_file_atomic(path, "{\"complete\": true}");
  try {
    AtomicFile file(path);
    file.write("{\"compl");
    throw std::runtime_error("simulated failure mid-write");
  } catch (const std::runtime_error&) {
  }
  EXPECT_EQ(read_file(path), "{\"complete\": true}");
  EXPECT_EQ(count_files(dir.path()), 1u) << "the temporary file must be removed";
}

TEST(AtomicFile, ProcessKilledMidWriteNeverTruncatesTheTarget) {
  test::TempDir dir;
  const auto path = dir / "config.yaml";
  write_file_atomic(path, "old: 1\n");
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    AtomicFile file(path);
    file.write("new: ");
    ::_exit(9);  // dies before commit, as a crash would
  }
  int status = 0;
  ::waitpid(child, &status, 0);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 9);
  EXPECT_EQ(read_file(path), "old: 1\n");
}

TEST(AtomicFile, UnwritableTargetNamesThePath) {
  test::TempDir dir;
  const auto blocker = dir / "file";
  write_file_atomic(blocker, "x");
  try {
    write_file_atomic(blocker / "child.txt", "y");
    FAIL() << "expected an error";
  } catch (const RuntimeFailure& e) {
    EXPECT_NE(std::string(e.what()).find(blocker.string()), std::string::npos) << e.what();
  }
}

TEST(AppendLine, CompleteLinesOnlyAfterAnInterruptedAppend) {
  test::TempDir dir;
  const auto path = dir / "metrics.jsonl";
  append_line(path, R"({"step": 1})");
  append_line(path, R"({"step": 2})");
  {
    // An append cut short by a crash: bytes without the final newline.
    FILE* f = std::fopen(path.c_str(), "ab");
    std::fputs(R"({"step": 3, "lo)", f);
    std::fclose(f);
  }
  const auto lines = read_complete_lines(path);
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[1], R"({"step": 2})");
}

TEST(ReadFile, MissingFileIsAnInputErrorNamingIt) {
  test::TempDir dir;
  try {
    read_file(dir / "nope.txt");
    FAIL();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("nope.txt: no such file"), std::string::npos);
  }
}

}  // namespace
}  // namespace iris
