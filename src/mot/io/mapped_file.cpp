#include "mot/io/mapped_file.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "mot/core/error.hpp"

namespace mot::io {

std::shared_ptr<void> map_file(const std::string& path, size_t* size) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail(path, ": cannot open: ", std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    int err = errno;
    ::close(fd);
    fail(path, ": cannot stat: ", std::strerror(err));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    fail(path, S_ISDIR(st.st_mode) ? ": is a directory, not a file" : ": not a regular file");
  }
  if (st.st_size == 0) {  // mmap of 0 bytes fails with EINVAL; say what is really wrong
    ::close(fd);
    fail(path, ": empty file");
  }
  void* p = ::mmap(nullptr, static_cast<size_t>(st.st_size), PROT_READ, MAP_PRIVATE, fd, 0);
  int err = errno;
  ::close(fd);  // the mapping keeps the file alive
  if (p == MAP_FAILED) fail(path, ": mmap failed: ", std::strerror(err));
  *size = static_cast<size_t>(st.st_size);
  size_t len = *size;
  return std::shared_ptr<void>(p, [len](void* q) { ::munmap(q, len); });
}

}  // namespace mot::io
