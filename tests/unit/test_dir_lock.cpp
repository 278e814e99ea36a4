// DirLock (one process per run directory) and the removal of temporaries left by
// dead processes.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "mot/core/error.hpp"
#include "mot/io/atomic_file.hpp"
#include "mot/io/dir_lock.hpp"
#include "test_files.hpp"

namespace fs = std::filesystem;
using mot::io::DirLock;

namespace {

class DirLockTest : public mot::test::TempDirTest {
 protected:
  void touch(const std::string& name) { std::ofstream(path(name)) << "x"; }
};

// A pid that belonged to a process which has exited and been reaped.
pid_t dead_pid() {
  const pid_t pid = ::fork();
  if (pid == 0) ::_exit(0);
  ::waitpid(pid, nullptr, 0);
  return pid;
}

TEST_F(DirLockTest, SecondLockIsRefusedNamingTheHolder) {
  const std::string run = path("run");
  DirLock first(run, "mot train", "wait");
  first.keep();
  try {
    DirLock second(run, "mot train", "choose another --out");
    FAIL() << "a second lock on the same directory was granted";
  } catch (const mot::Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("in use by another mot process (pid " + std::to_string(::getpid()) + " mot train)"),
              std::string::npos) << msg;
    EXPECT_NE(msg.find("choose another --out"), std::string::npos) << msg;
  }
  ASSERT_TRUE(mot::io::dir_lock_holder(run).has_value());
  EXPECT_EQ(*mot::io::dir_lock_holder(run), std::to_string(::getpid()) + " mot train");
}

TEST_F(DirLockTest, ReleasedOnDestructionAndByTheKernelWhenTheHolderDies) {
  const std::string run = path("run");
  {
    DirLock a(run, "mot train", "wait");
    a.keep();
  }
  EXPECT_FALSE(mot::io::dir_lock_holder(run).has_value());
  // A child takes the lock and is killed with SIGKILL: no stale lock remains.
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  const pid_t child = ::fork();
  if (child == 0) {
    DirLock held(run, "mot train", "wait");
    held.keep();
    char c = 1;
    [[maybe_unused]] auto n = ::write(ready[1], &c, 1);
    ::pause();
    ::_exit(0);
  }
  char c;
  ASSERT_EQ(::read(ready[0], &c, 1), 1);
  EXPECT_TRUE(mot::io::dir_lock_holder(run).has_value());
  ::kill(child, SIGKILL);
  ::waitpid(child, nullptr, 0);
  EXPECT_FALSE(mot::io::dir_lock_holder(run).has_value());
  DirLock again(run, "mot train", "wait");
  again.keep();
  ::close(ready[0]);
  ::close(ready[1]);
}

TEST_F(DirLockTest, RefusedCommandLeavesNothingBehind) {
  { DirLock made(path("new"), "mot train", "wait"); }
  EXPECT_FALSE(fs::exists(path("new"))) << "a directory the lock created is removed unless kept";
  fs::create_directory(path("mine"));
  touch("mine/notes.txt");
  { DirLock existing(path("mine"), "mot compare", "wait"); }
  EXPECT_TRUE(fs::exists(path("mine/notes.txt")));
  EXPECT_FALSE(fs::exists(path("mine/.lock"))) << "only the lock file it created goes";
  {
    DirLock kept(path("kept"), "mot train", "wait");
    kept.keep();
  }
  EXPECT_TRUE(fs::exists(path("kept/.lock")));
}

TEST_F(DirLockTest, TemporaryOwnerParsesOnlyPidSuffixes) {
  EXPECT_EQ(mot::io::temporary_owner("model.safetensors.tmp.1234"), 1234);
  EXPECT_EQ(mot::io::temporary_owner("step-00000003.trash.77"), 77);
  EXPECT_EQ(mot::io::temporary_owner("notes.tmp.x"), 0);
  EXPECT_EQ(mot::io::temporary_owner("notes.tmp."), 0);
  EXPECT_EQ(mot::io::temporary_owner(".tmp.12"), 0);
  EXPECT_EQ(mot::io::temporary_owner("model.safetensors"), 0);
}

TEST_F(DirLockTest, StaleTemporariesOfDeadProcessesAreRemoved) {
  const std::string dead = std::to_string(dead_pid());
  const std::string live = std::to_string(::getppid());
  const std::string mine = std::to_string(::getpid());
  touch("a.safetensors.tmp." + dead);
  fs::create_directory(path("step-00000004.tmp." + dead));
  touch("step-00000004.tmp." + dead + "/model.safetensors");
  touch("b.safetensors.tmp." + live);
  touch("c.safetensors.tmp." + mine);
  touch("notes.tmp.x");
  EXPECT_EQ(mot::io::remove_stale_temporaries(dir_.string(), false), 2);
  EXPECT_FALSE(fs::exists(path("a.safetensors.tmp." + dead)));
  EXPECT_FALSE(fs::exists(path("step-00000004.tmp." + dead)));
  EXPECT_TRUE(fs::exists(path("b.safetensors.tmp." + live))) << "a live process may still be writing it";
  EXPECT_TRUE(fs::exists(path("c.safetensors.tmp." + mine)));
  EXPECT_TRUE(fs::exists(path("notes.tmp.x")));
  // Under the directory's lock no other process writes there: a live pid's file is stale too.
  EXPECT_EQ(mot::io::remove_stale_temporaries(dir_.string(), true), 1);
  EXPECT_FALSE(fs::exists(path("b.safetensors.tmp." + live)));
  EXPECT_TRUE(fs::exists(path("c.safetensors.tmp." + mine)));
}

}  // namespace
