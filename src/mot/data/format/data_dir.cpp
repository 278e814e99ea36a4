#include "mot/data/format/data_dir.hpp"

#include <filesystem>
#include <fstream>

#include "mot/core/error.hpp"

namespace mot::data {

namespace fs = std::filesystem;

void create_writable_dir(const std::string& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) fail(dir, ": cannot create directory: ", ec.message());
  const std::string probe = dir + "/.write-test";
  std::ofstream f(probe);
  if (!f) fail(dir, ": directory is not writable");
  f.close();
  fs::remove(probe, ec);
}

}  // namespace mot::data
