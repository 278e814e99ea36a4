// One process per directory: an exclusive flock(2) on DIR/.lock. The kernel drops the
// lock when the holder dies, even by kill -9, so a crash never leaves a stale lock and
// nothing has to be cleaned up by hand. The holder writes "<pid> <what>" into the file
// so a refusal can say who holds it.
#pragma once
#include <optional>
#include <string>

namespace mot::io {

class DirLock {
 public:
  // Creates DIR if missing, then locks it or throws mot::Error naming the holder.
  // `what` says what this process does there ("mot train"), for the holder line;
  // `advice` ends the refusal ("wait for it to finish, or choose another --out").
  DirLock(const std::string& dir, const std::string& what, const std::string& advice);
  // Unless keep() was called, removes what the constructor created (the directory
  // with everything in it, or just the lock file), so a refused command leaves
  // nothing behind.
  ~DirLock();
  void keep() { keep_ = true; }
  DirLock(const DirLock&) = delete;
  DirLock& operator=(const DirLock&) = delete;

 private:
  std::string dir_;
  int fd_ = -1;
  bool created_dir_ = false, created_file_ = false, keep_ = false;
};

// "<pid> <what>" of the process holding DIR's lock now, or nothing if it is free.
std::optional<std::string> dir_lock_holder(const std::string& dir);

}  // namespace mot::io
