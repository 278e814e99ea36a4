// safetensors reader (memory-mapped, fully validated on open) and atomic writer.
// Format: 8-byte little-endian header length N, N bytes of JSON header, raw data.
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace mot::io {

enum class DType { F32, F16, BF16, Other };

struct TensorInfo {
  std::string name;
  DType dtype = DType::Other;
  std::string dtype_name;      // as written in the file, e.g. "F32", "I64"
  std::vector<int64_t> shape;
  size_t offset = 0;           // byte offset inside the data section
  size_t nbytes = 0;
  int64_t numel() const;
};

class SafetensorsFile {
 public:
  // Opens and validates the whole header. Throws mot::Error("<path>: <reason>") on a
  // missing, truncated or corrupt file.
  static SafetensorsFile open(const std::string& path);
  // Validates an in-memory image (no copy; bytes must outlive the object). For fuzzing.
  static SafetensorsFile parse(std::span<const uint8_t> bytes, const std::string& origin);

  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  const TensorInfo* find(const std::string& name) const;  // nullptr if absent
  // Copies a F32/F16/BF16 tensor into dst as fp32 (dst holds numel floats).
  void read_f32(const TensorInfo& t, float* dst) const;
  std::span<const uint8_t> raw(const TensorInfo& t) const;
  const std::string& origin() const { return origin_; }

 private:
  std::string origin_;
  std::shared_ptr<void> mapping_;          // keeps the mmap alive (null for parse())
  std::span<const uint8_t> bytes_;         // whole file
  std::span<const uint8_t> data_;          // data section
  std::map<std::string, std::string> metadata_;
  std::vector<TensorInfo> tensors_;
  std::map<std::string, size_t> index_;
};

struct TensorToWrite {
  std::string name;
  DType dtype = DType::F32;  // F32 or BF16 (data already in that dtype)
  std::vector<int64_t> shape;
  const void* data = nullptr;
};

// Writes atomically (see atomic_file.hpp). Tensors are laid out in the given order,
// each data offset aligned to 8 bytes via header padding per the safetensors spec.
void write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                       const std::map<std::string, std::string>& metadata);

}  // namespace mot::io
