// Typed errors thrown by library code. Only `main` turns them into messages and exit codes.
#pragma once

#include <stdexcept>
#include <string>

namespace iris {

// Process exit codes; distinct per failure class so scripts can tell them apart.
enum class ExitCode : int {
  kOk = 0,
  kFailure = 1,       // unexpected internal error
  kUsage = 2,         // bad command line
  kBadInput = 3,      // a file, field or value is wrong
  kRuntime = 4,       // the work itself failed (I/O, numerical, environment)
  kNotAvailable = 5,  // the command or feature is not in this build or version
};

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
  virtual ExitCode exit_code() const { return ExitCode::kRuntime; }
};

// The command line was wrong (unknown option, missing argument, bad value syntax).
class UsageError : public Error {
 public:
  using Error::Error;
  ExitCode exit_code() const override { return ExitCode::kUsage; }
};

// A user-supplied file, field or value is wrong. Messages name the file/field and what was expected.
class InputError : public Error {
 public:
  using Error::Error;
  ExitCode exit_code() const override { return ExitCode::kBadInput; }
};

// A configuration file or override is wrong (unknown key, wrong type, bad value).
class ConfigError : public InputError {
 public:
  using InputError::InputError;
};

// The work failed for a reason outside the input (disk, device, numerical failure).
class RuntimeFailure : public Error {
 public:
  using Error::Error;
};

// A command or feature that this build or version does not provide.
class NotAvailableError : public Error {
 public:
  using Error::Error;
  ExitCode exit_code() const override { return ExitCode::kNotAvailable; }
};

// "path: message" — the one-line form every file-related error uses.
std::string file_message(const std::string& path, const std::string& message);

}  // namespace iris
