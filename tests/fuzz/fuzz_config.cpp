// libFuzzer target: the TOML config parser (model/train/data tables, overrides off).
#include <cstddef>
#include <cstdint>
#include <string>

#include "mot/core/error.hpp"
#include "mot/model/config.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    mot::RunConfig rc = mot::run_config_from_toml_text(text, "fuzz.toml", {});
    // A config that parses must also survive a round trip through its own output.
    mot::run_config_from_toml_text(rc.to_toml(), "roundtrip.toml", {});
  } catch (const mot::Error&) {
  }
  return 0;
}
