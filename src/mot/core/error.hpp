// User-facing errors. Anything the user can cause (bad flag, config, file, data)
// throws mot::Error; the CLI prints its message as one line and exits with status 2.
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

namespace mot {

struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// A non-finite loss: the trainer reports it as divergence, with what it can do about it.
struct NonFiniteLoss : Error {
  using Error::Error;
};

// Concatenate anything streamable into one string (GCC 12 has no <format>).
template <class... Args>
std::string cat(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}

template <class... Args>
[[noreturn]] void fail(const Args&... args) {
  throw Error(cat(args...));
}

}  // namespace mot
