// Crash- and disk-full-safe file writes: data goes to "<path>.tmp.<pid>" in the same
// directory, is fsync'ed, then renamed over <path>, then the directory is fsync'ed.
// On any failure the temp file is removed, <path> keeps its old content, and a
// mot::Error names the path and the OS reason (e.g. "No space left on device").
#pragma once
#include <cstddef>
#include <string>
#include <string_view>

namespace mot::io {

class AtomicWriter {
 public:
  explicit AtomicWriter(std::string path);  // opens the temp file
  AtomicWriter(const AtomicWriter&) = delete;
  AtomicWriter& operator=(const AtomicWriter&) = delete;
  ~AtomicWriter();  // removes the temp file unless commit() succeeded

  void write(const void* data, size_t n);  // throws mot::Error on short write / ENOSPC / EFBIG
  void commit();                           // fsync + rename + fsync(dir)

 private:
  std::string path_, tmp_;
  int fd_ = -1;
  bool committed_ = false;
};

void write_file_atomic(const std::string& path, std::string_view content);

}  // namespace mot::io
