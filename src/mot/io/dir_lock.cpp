#include "mot/io/dir_lock.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "mot/core/error.hpp"

namespace mot::io {

namespace {

std::string lock_path(const std::string& dir) { return dir + "/.lock"; }

// The holder writes its pid just after it takes the lock: a loser that looks in
// between finds the file empty, so it looks again for a moment before giving up.
std::string read_holder(int fd) {
  for (int tries = 0;; ++tries) {
    char buf[256] = {};
    const ssize_t n = ::pread(fd, buf, sizeof buf - 1, 0);
    std::string s = n > 0 ? std::string(buf, static_cast<size_t>(n)) : "";
    while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
    if (!s.empty()) return s;
    if (tries == 50) return "unknown pid";
    ::usleep(10000);
  }
}

}  // namespace

DirLock::DirLock(const std::string& dir, const std::string& what, const std::string& advice) : dir_(dir) {
  std::error_code ec;
  created_dir_ = std::filesystem::create_directories(dir, ec);
  if (ec) fail(dir, ": cannot create directory: ", ec.message());
  const std::string path = lock_path(dir);
  // A holder that gives up removes the lock file; whoever locked that unlinked file
  // meanwhile must try again on the new one, so check the name still leads to ours.
  for (int attempt = 0;; ++attempt) {
    // O_CLOEXEC: a child (the trainers `mot compare` starts) must not inherit, and so
    // keep holding, its parent's lock after the parent dies.
    fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    created_file_ = fd_ >= 0;
    if (fd_ < 0 && errno == EEXIST) fd_ = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
    if (fd_ < 0) fail(path, ": cannot create lock file: ", std::strerror(errno));
    int rc;
    do rc = ::flock(fd_, LOCK_EX | LOCK_NB);
    while (rc != 0 && errno == EINTR);
    if (rc != 0) {
      const int err = errno;
      const std::string holder = err == EWOULDBLOCK ? read_holder(fd_) : "";
      ::close(fd_);
      fd_ = -1;
      if (err != EWOULDBLOCK) fail(path, ": cannot lock: ", std::strerror(err));
      fail(dir, ": in use by another mot process (pid ", holder, "); ", advice);
    }
    struct stat held {}, named {};
    if (::fstat(fd_, &held) == 0 && ::stat(path.c_str(), &named) == 0 && held.st_ino == named.st_ino &&
        held.st_dev == named.st_dev)
      break;
    ::close(fd_);
    fd_ = -1;
    if (attempt == 100) fail(path, ": the lock file keeps changing; is another program deleting it?");
  }
  const std::string me = cat(::getpid(), " ", what, "\n");
  // Best effort: the lock itself is what protects the directory, the text only names us.
  if (::ftruncate(fd_, 0) == 0 && ::pwrite(fd_, me.data(), me.size(), 0) < 0) {
  }
}

DirLock::~DirLock() {
  if (fd_ < 0) return;
  if (!keep_) {
    // Still holding the lock, so nobody else works in the directory now.
    std::error_code ec;
    if (created_dir_) std::filesystem::remove_all(dir_, ec);
    else if (created_file_) ::unlink(lock_path(dir_).c_str());
  }
  ::close(fd_);  // closing drops the flock
}

std::optional<std::string> dir_lock_holder(const std::string& dir) {
  const int fd = ::open(lock_path(dir).c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  std::optional<std::string> holder;
  if (::flock(fd, LOCK_SH | LOCK_NB) != 0 && errno == EWOULDBLOCK) holder = read_holder(fd);
  ::close(fd);  // also drops the shared lock if we got it
  return holder;
}

}  // namespace mot::io
