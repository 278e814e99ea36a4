// Read-only memory map of a whole regular file, shared by the safetensors and shard
// readers. Errors are one line naming the path (missing, not a regular file, empty,
// mmap failure).
#pragma once
#include <cstddef>
#include <memory>
#include <string>

namespace mot::io {

// Maps `path`; *size receives its length. The mapping lives as long as the pointer.
std::shared_ptr<void> map_file(const std::string& path, size_t* size);

}  // namespace mot::io
