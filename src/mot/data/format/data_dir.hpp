// A data directory as a place to write to (`mot data synth`, `mot data prepare`).
#pragma once
#include <string>

namespace mot::data {

// Creates dir (and its parents) if missing and checks a file can be created in it;
// mot::Error naming dir otherwise.
void create_writable_dir(const std::string& dir);

}  // namespace mot::data
