// AtomicWriter: the target keeps its old content on any failure and no temp file is
// ever left behind.
#include <gtest/gtest.h>

#include "test_files.hpp"
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "mot/core/error.hpp"
#include "mot/io/atomic_file.hpp"

namespace fs = std::filesystem;
using mot::io::AtomicWriter;
using mot::io::write_file_atomic;

namespace {

class AtomicFileTest : public mot::test::TempDirTest {
 protected:
  static std::string slurp(const std::string& p) {
    std::ifstream in(p, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  // Names of everything in the directory: a leftover "*.tmp.<pid>" shows up here.
  std::vector<std::string> entries() const {
    std::vector<std::string> v;
    for (const auto& e : fs::directory_iterator(dir_)) v.push_back(e.path().filename().string());
    std::sort(v.begin(), v.end());
    return v;
  }

};

TEST_F(AtomicFileTest, WritesNewFileWithoutLeftovers) {
  write_file_atomic(path("a.txt"), "hello");
  EXPECT_EQ(slurp(path("a.txt")), "hello");
  EXPECT_EQ(entries(), std::vector<std::string>{"a.txt"});
}

TEST_F(AtomicFileTest, ReplacesExistingFile) {
  write_file_atomic(path("a.txt"), "old content");
  write_file_atomic(path("a.txt"), "new");
  EXPECT_EQ(slurp(path("a.txt")), "new");
  EXPECT_EQ(entries(), std::vector<std::string>{"a.txt"});
}

TEST_F(AtomicFileTest, ManyWritesAndEmptyFile) {
  std::string big;
  {
    AtomicWriter w(path("big"));
    for (int i = 0; i < 1000; ++i) {
      std::string chunk(3000 + i, static_cast<char>('a' + i % 26));
      w.write(chunk.data(), chunk.size());
      big += chunk;
    }
    w.write(nullptr, 0);
    w.commit();
  }
  EXPECT_EQ(slurp(path("big")), big);
  write_file_atomic(path("empty"), "");
  EXPECT_EQ(fs::file_size(path("empty")), 0u);
}

TEST_F(AtomicFileTest, UncommittedWriterRemovesTempAndKeepsOldFile) {
  write_file_atomic(path("a.txt"), "old");
  {
    AtomicWriter w(path("a.txt"));
    w.write("partial", 7);
    EXPECT_EQ(entries().size(), 2u);  // the temp file exists while writing
  }
  EXPECT_EQ(slurp(path("a.txt")), "old");
  EXPECT_EQ(entries(), std::vector<std::string>{"a.txt"});
}

TEST_F(AtomicFileTest, MissingDirectoryIsAnErrorNamingThePath) {
  std::string p = path("no/such/dir/file.bin");
  try {
    write_file_atomic(p, "x");
    FAIL() << "expected mot::Error";
  } catch (const mot::Error& e) {
    std::string msg = e.what();
    EXPECT_EQ(msg.rfind(p + ": ", 0), 0u) << msg;
    EXPECT_NE(msg.find("No such file or directory"), std::string::npos) << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos);
  }
  EXPECT_TRUE(entries().empty());
}

TEST_F(AtomicFileTest, RenameOntoDirectoryFailsAndCleansUp) {
  fs::create_directory(path("sub"));
  EXPECT_THROW(write_file_atomic(path("sub"), "x"), mot::Error);
  EXPECT_EQ(entries(), std::vector<std::string>{"sub"});
}

TEST_F(AtomicFileTest, MisuseIsAnError) {
  AtomicWriter w(path("a"));
  w.write("x", 1);
  w.commit();
  EXPECT_THROW(w.commit(), mot::Error);
  EXPECT_THROW(w.write("y", 1), mot::Error);
  EXPECT_EQ(slurp(path("a")), "x");
}

// A file-size limit makes write() fail with EFBIG, exactly like a full disk fails
// with ENOSPC. Done in a child so the limit does not leak into the test runner.
TEST_F(AtomicFileTest, FailedWriteKeepsOldFileAndLeavesNoTemp) {
  const std::string p = path("model.bin");
  write_file_atomic(p, "old model");
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    std::signal(SIGXFSZ, SIG_IGN);  // as the CLI does: get EFBIG instead of dying
    rlimit lim{4096, 4096};
    if (::setrlimit(RLIMIT_FSIZE, &lim) != 0) ::_exit(10);
    try {
      AtomicWriter w(p);
      std::string chunk(1000, 'z');
      for (int i = 0; i < 100; ++i) w.write(chunk.data(), chunk.size());
      w.commit();
      ::_exit(11);  // the limit did not bite
    } catch (const mot::Error& e) {
      std::string msg = e.what();
      bool ok = msg.rfind(p + ": ", 0) == 0 && msg.find("File too large") != std::string::npos;
      ::_exit(ok ? 0 : 12);
    } catch (...) {
      ::_exit(13);
    }
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status)) << "child died from signal " << WTERMSIG(status);
  EXPECT_EQ(WEXITSTATUS(status), 0);
  EXPECT_EQ(slurp(p), "old model");
  EXPECT_EQ(entries(), std::vector<std::string>{"model.bin"});
}

}  // namespace
