#include "core/error.h"

namespace iris {

std::string file_message(const std::string& path, const std::string& message) {
  return path + ": " + message;
}

}  // namespace iris
