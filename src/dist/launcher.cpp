#include "dist/launcher.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>
#include <optional>
#include <thread>

extern char** environ;

namespace iris::dist {
namespace {

std::string describe_status(int status) {
  if (WIFSIGNALED(status)) {
    const int sig = WTERMSIG(status);
    const char* name = strsignal(sig);
    return fmt::format("was killed by signal {} ({})", sig, name ? name : "unknown");
  }
  return fmt::format("exited with status {}", WEXITSTATUS(status));
}

ExitCode exit_code_of(int status) {
  if (WIFEXITED(status)) {
    const int code = WEXITSTATUS(status);
    if (code >= 1 && code <= 5) return static_cast<ExitCode>(code);
  }
  return ExitCode::kRuntime;
}

bool is_rank_variable(const char* entry) {
  for (const char* name : {"RANK=", "WORLD_SIZE=", "LOCAL_RANK=", "LOCAL_WORLD_SIZE=",
                           "MASTER_ADDR=", "MASTER_PORT="}) {
    if (std::strncmp(entry, name, std::strlen(name)) == 0) return true;
  }
  return false;
}

}  // namespace

std::vector<std::string> own_command_line() {
  std::ifstream in("/proc/self/cmdline", std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::string> args;
  std::string current;
  for (char c : bytes) {
    if (c == '\0') {
      args.push_back(current);
      current.clear();
    } else {
      current += c;
    }
  }
  if (!current.empty()) args.push_back(current);
  if (args.empty())
    throw RuntimeFailure("cannot read this process's command line (/proc/self/cmdline)");
  return args;
}

int free_tcp_port(const std::string& address) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) throw RuntimeFailure(fmt::format("socket(): {}", std::strerror(errno)));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = 0;
  if (::inet_pton(AF_INET, address.c_str(), &addr.sin_addr) != 1) {
    ::close(fd);
    throw InputError(fmt::format("'{}' is not an IPv4 address", address));
  }
  socklen_t len = sizeof(addr);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    const std::string why = std::strerror(errno);
    ::close(fd);
    throw RuntimeFailure(fmt::format("no free TCP port on {}: {}", address, why));
  }
  ::close(fd);
  return ntohs(addr.sin_port);
}

void launch_local_ranks(const std::vector<std::string>& args, const LaunchOptions& options) {
  if (options.nproc < 1) throw UsageError("--nproc must be at least 1");
  if (args.empty()) throw UsageError("launch_local_ranks: no command line");
  const int port =
      options.master_port > 0 ? options.master_port : free_tcp_port(options.master_addr);
  spdlog::info("starting {} ranks, meeting at {}:{}", options.nproc, options.master_addr, port);

  // Everything exec needs is built before fork: the child only calls async-signal-safe functions.
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  std::vector<std::string> base_env;
  for (char** e = environ; *e != nullptr; ++e) {
    if (!is_rank_variable(*e)) base_env.emplace_back(*e);
  }
  const pid_t launcher = ::getpid();
  std::vector<pid_t> pids(static_cast<std::size_t>(options.nproc), -1);
  std::vector<std::vector<std::string>> envs(pids.size());
  for (int rank = 0; rank < options.nproc; ++rank) {
    auto& env = envs[static_cast<std::size_t>(rank)];
    env = base_env;
    env.push_back(fmt::format("RANK={}", rank));
    env.push_back(fmt::format("LOCAL_RANK={}", rank));
    env.push_back(fmt::format("WORLD_SIZE={}", options.nproc));
    env.push_back(fmt::format("LOCAL_WORLD_SIZE={}", options.nproc));
    env.push_back("MASTER_ADDR=" + options.master_addr);
    env.push_back(fmt::format("MASTER_PORT={}", port));
  }
  auto stop_all = [&](int sig) {
    for (pid_t pid : pids) {
      if (pid > 0) ::kill(pid, sig);
    }
  };
  for (int rank = 0; rank < options.nproc; ++rank) {
    std::vector<char*> envp;
    for (auto& e : envs[static_cast<std::size_t>(rank)]) envp.push_back(e.data());
    envp.push_back(nullptr);
    const pid_t pid = ::fork();
    if (pid < 0) {
      const std::string why = std::strerror(errno);
      stop_all(SIGKILL);
      for (pid_t p : pids) {
        if (p > 0) ::waitpid(p, nullptr, 0);
      }
      throw RuntimeFailure(fmt::format("starting rank {}: fork failed: {}", rank, why));
    }
    if (pid == 0) {
      // A rank must not outlive its launcher; the launcher may already be gone.
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != launcher) ::_exit(127);
      ::execve("/proc/self/exe", argv.data(), envp.data());
      ::_exit(127);
    }
    pids[static_cast<std::size_t>(rank)] = pid;
  }

  int running = options.nproc;
  std::optional<std::string> failure;
  ExitCode failure_code = ExitCode::kRuntime;
  std::chrono::steady_clock::time_point kill_at;
  while (running > 0) {
    int status = 0;
    const pid_t pid = ::waitpid(-1, &status, failure ? WNOHANG : 0);
    if (pid < 0) {
      if (errno == EINTR) continue;
      break;  // no children left
    }
    if (pid == 0) {  // stopping the others after a failure: poll, then force
      if (std::chrono::steady_clock::now() >= kill_at) {
        stop_all(SIGKILL);
        kill_at = std::chrono::steady_clock::time_point::max();
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      continue;
    }
    int rank = -1;
    for (std::size_t r = 0; r < pids.size(); ++r) {
      if (pids[r] == pid) rank = static_cast<int>(r);
    }
    if (rank < 0) continue;
    pids[static_cast<std::size_t>(rank)] = -1;
    --running;
    const bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    if (!ok && !failure) {
      failure = fmt::format("rank {} (pid {}) {}", rank, pid, describe_status(status));
      failure_code = exit_code_of(status);
      spdlog::error("{}; stopping the other {} rank(s)", *failure, running);
      stop_all(SIGTERM);
      kill_at = std::chrono::steady_clock::now() + options.grace;
    }
  }
  if (failure) {
    throw RankFailedError(fmt::format("distributed run failed: {}", *failure), failure_code);
  }
}

}  // namespace iris::dist
