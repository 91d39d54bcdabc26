// `iris train CONFIG --nproc N`: this executable starts N copies of itself as the ranks of one
// local process group and watches them. No Python or torchrun needed on one machine.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "core/error.h"

namespace iris::dist {

// A rank exited non-zero or was killed; carries the exit code the launcher should end with (the
// rank's own IRIS exit code when it had one, kRuntime for a signal).
class RankFailedError : public Error {
 public:
  RankFailedError(const std::string& message, ExitCode code) : Error(message), code_(code) {}
  ExitCode exit_code() const override { return code_; }

 private:
  ExitCode code_;
};

struct LaunchOptions {
  int nproc = 2;
  std::string master_addr = "127.0.0.1";
  int master_port = 0;  // 0: a free port of master_addr
  // After a rank failed, the others get SIGTERM and, after this long, SIGKILL.
  std::chrono::milliseconds grace{std::chrono::seconds(5)};
};

// This process's own argv (from /proc/self/cmdline), argv[0] included.
std::vector<std::string> own_command_line();

// A TCP port on `address` that nothing listens on right now.
int free_tcp_port(const std::string& address = "127.0.0.1");

// Runs /proc/self/exe with `args` (argv[0] included) as ranks 0..nproc-1, with RANK, WORLD_SIZE,
// LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR and MASTER_PORT set, and waits for all of them.
// Returns when every rank exited 0. When one fails, stops the others and throws
// RankFailedError naming the rank, its pid and its exit status or signal. Ranks die with the
// launcher (PR_SET_PDEATHSIG).
void launch_local_ranks(const std::vector<std::string>& args, const LaunchOptions& options);

}  // namespace iris::dist
