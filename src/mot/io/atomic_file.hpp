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

// Removes what a crashed writer left in `dir` (not recursive): "<name>.tmp.<pid>"
// files and directories whose pid is not a live process, or every one not made by
// this process when `dir_is_locked` (the caller holds the directory's DirLock, so no
// other writer can be at work there). Returns how many it removed.
int remove_stale_temporaries(const std::string& dir, bool dir_is_locked);

// Where this process writes `path` before renaming it into place ("<path>.tmp.<pid>"),
// and where it moves `path` before deleting it ("<path>.trash.<pid>"), so that a
// rename is the only step that changes what `path` names.
std::string temporary_name(const std::string& path);
std::string trash_name(const std::string& path);

// The pid in a name made by temporary_name or trash_name, or 0.
long temporary_owner(const std::string& name);

// fsync of a directory, so a rename or create inside it survives a power loss.
// Filesystems that cannot sync a directory (EINVAL) are not an error.
void sync_directory(const std::string& dir);

}  // namespace mot::io
