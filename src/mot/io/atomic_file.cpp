#include "mot/io/atomic_file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <csignal>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "mot/core/error.hpp"

namespace mot::io {
namespace {

std::string errno_text(int err) { return std::strerror(err); }

// Directory that holds `path` ("." for a bare file name), for the post-rename fsync.
std::string parent_dir(const std::string& path) {
  size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

// fsync that retries on EINTR (Linux may return it on some network filesystems).
int fsync_retry(int fd) {
  int rc;
  do rc = ::fsync(fd);
  while (rc != 0 && errno == EINTR);
  return rc;
}

}  // namespace

AtomicWriter::AtomicWriter(std::string path) : path_(std::move(path)) {
  if (path_.empty()) fail("(empty path): cannot write a file with an empty name");
  tmp_ = temporary_name(path_);
  // 0666 & ~umask, like any ordinary file the user creates.
  fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
  if (fd_ < 0) fail(path_, ": cannot create temporary file ", tmp_, ": ", errno_text(errno));
}

AtomicWriter::~AtomicWriter() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_) ::unlink(tmp_.c_str());  // best effort; the error (if any) was already thrown
}

void AtomicWriter::write(const void* data, size_t n) {
  if (committed_) fail(path_, ": write after commit");
  if (fd_ < 0) fail(path_, ": write after an earlier write error");
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    // Linux caps one write() at ~2 GiB; asking for less keeps the arithmetic obvious.
    size_t chunk = n < (size_t{1} << 30) ? n : (size_t{1} << 30);
    ssize_t w = ::write(fd_, p, chunk);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      // w == 0 should not happen for a regular file; report it as a full disk.
      // EFBIG arrives here (instead of a fatal SIGXFSZ) because the CLI ignores SIGXFSZ.
      int err = w < 0 ? errno : ENOSPC;
      // Drop the partial temp file now so a full disk gets its space back at once.
      ::close(fd_);
      fd_ = -1;
      ::unlink(tmp_.c_str());
      fail(path_, ": write failed: ", errno_text(err));
    }
    p += w;
    n -= static_cast<size_t>(w);
  }
}

void AtomicWriter::commit() {
  if (committed_) fail(path_, ": commit called twice");
  if (fd_ < 0) fail(path_, ": commit after an earlier write error");
  // Data must be on disk before the rename makes it visible, or a crash could leave
  // <path> pointing at an empty or partial file.
  if (fsync_retry(fd_) != 0) fail(path_, ": fsync failed: ", errno_text(errno));
  int fd = fd_;
  fd_ = -1;
  // close() can report delayed write errors (e.g. NFS quota); never retry it.
  if (::close(fd) != 0 && errno != EINTR) fail(path_, ": close failed: ", errno_text(errno));
  if (::rename(tmp_.c_str(), path_.c_str()) != 0) fail(path_, ": rename failed: ", errno_text(errno));
  committed_ = true;
  sync_directory(parent_dir(path_));
}

void sync_directory(const std::string& dir) {
  // Some filesystems cannot fsync a directory (EINVAL); the rename already happened,
  // so that is not worth failing for.
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) fail(dir, ": cannot open directory to sync it: ", errno_text(errno));
  int rc = fsync_retry(dfd);
  int err = errno;
  ::close(dfd);
  if (rc != 0 && err != EINVAL) fail(dir, ": fsync of directory failed: ", errno_text(err));
}

std::string temporary_name(const std::string& path) { return cat(path, ".tmp.", ::getpid()); }
std::string trash_name(const std::string& path) { return cat(path, ".trash.", ::getpid()); }

long temporary_owner(const std::string& name) {
  for (const char* tag : {".tmp.", ".trash."}) {
    const size_t at = name.rfind(tag);
    if (at == std::string::npos || at == 0) continue;
    const std::string digits = name.substr(at + std::strlen(tag));
    if (digits.empty() || digits.size() > 9 || digits.find_first_not_of("0123456789") != std::string::npos) continue;
    return std::stol(digits);
  }
  return 0;
}

int remove_stale_temporaries(const std::string& dir, bool dir_is_locked) {
  namespace fs = std::filesystem;
  std::error_code ec;
  int removed = 0;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const long pid = temporary_owner(it->path().filename().string());
    if (pid <= 0 || pid == ::getpid()) continue;
    const bool alive = ::kill(static_cast<pid_t>(pid), 0) == 0 || errno == EPERM;
    if (alive && !dir_is_locked) continue;
    std::error_code rm;
    if (fs::remove_all(it->path(), rm) > 0 && !rm) ++removed;
  }
  return removed;
}

void write_file_atomic(const std::string& path, std::string_view content) {
  AtomicWriter w(path);
  w.write(content.data(), content.size());
  w.commit();
}

}  // namespace mot::io
