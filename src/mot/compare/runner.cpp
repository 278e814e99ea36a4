#include "mot/compare/runner.hpp"

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstring>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "mot/core/error.hpp"
#include "mot/io/dir_lock.hpp"
#include "mot/train/checkpoint.hpp"

extern char** environ;

namespace mot::compare {

namespace fs = std::filesystem;

namespace {

std::atomic<int> g_stop{0};
extern "C" void on_stop_signal(int sig) { g_stop.store(sig); }

// `mot train` exits with 130 after saving when it was interrupted.
constexpr int kInterrupted = 130;

struct Last {
  int64_t step = 0;
  double loss = 0;
};

// The last complete line of metrics.jsonl.
Last last_metrics(const std::string& run_dir) {
  Last l;
  std::ifstream f(run_dir + "/metrics.jsonl");
  std::string line, last;
  while (std::getline(f, line))
    if (!line.empty()) last = line;
  if (last.empty()) return l;
  try {
    auto j = nlohmann::json::parse(last);
    l.step = j.value("step", int64_t{0});
    l.loss = j.value("loss", 0.0);
  } catch (const nlohmann::json::exception&) {
  }
  return l;
}

pid_t spawn(const TrainJob& job, bool resume) {
  std::error_code ec;
  fs::create_directories(job.run_dir, ec);
  if (ec) fail(job.run_dir, ": cannot create: ", ec.message());
  std::vector<std::string> argv = {"mot", "train"};
  if (resume) {
    argv.insert(argv.end(), {"--resume", "--out", job.run_dir, "--steps", std::to_string(job.steps)});
  } else {
    argv.insert(argv.end(), job.args.begin(), job.args.end());
    argv.insert(argv.end(), {"--out", job.run_dir, "--steps", std::to_string(job.steps)});
  }
  std::vector<char*> cargv;
  for (auto& a : argv) cargv.push_back(a.data());
  cargv.push_back(nullptr);
  const std::string log = job.run_dir + "/train.log";
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  // Each trainer in its own process group: a terminal's Ctrl-C reaches only this
  // process, which passes one SIGINT on (a trainer takes a second one as "stop now,
  // without saving"). MOT_PARENT_PID makes the trainer stop when this process dies.
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);
  posix_spawnattr_setpgroup(&attr, 0);
  std::vector<std::string> env;
  for (char** e = environ; *e; ++e)
    if (std::strncmp(*e, "MOT_PARENT_PID=", 15) != 0) env.emplace_back(*e);
  env.push_back(cat("MOT_PARENT_PID=", ::getpid()));
  std::vector<char*> cenv;
  for (auto& e : env) cenv.push_back(e.data());
  cenv.push_back(nullptr);
  pid_t pid = 0;
  const int rc = posix_spawn(&pid, "/proc/self/exe", &fa, &attr, cargv.data(), cenv.data());
  posix_spawnattr_destroy(&attr);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) fail("cannot start the training of ", job.label, ": ", std::strerror(rc));
  return pid;
}

}  // namespace

bool run_finished(const std::string& run_dir, int64_t steps) {
  return fs::exists(run_dir + "/model.safetensors") && last_metrics(run_dir).step >= steps;
}

bool run_train_jobs(const std::vector<TrainJob>& jobs, int parallel) {
  struct Running {
    size_t job;
    pid_t pid;
  };
  g_stop.store(0);
  struct Handlers {
    struct sigaction old_int {}, old_term {}, old_hup {};
    Handlers() {
      struct sigaction sa {};
      sa.sa_handler = on_stop_signal;
      sa.sa_flags = SA_RESTART;  // the waitpid calls below must not return early
      sigemptyset(&sa.sa_mask);
      sigaction(SIGINT, &sa, &old_int);
      sigaction(SIGTERM, &sa, &old_term);
      sigaction(SIGHUP, &sa, &old_hup);
    }
    ~Handlers() {
      sigaction(SIGINT, &old_int, nullptr);
      sigaction(SIGTERM, &old_term, nullptr);
      sigaction(SIGHUP, &old_hup, nullptr);
    }
  } handlers;
  std::vector<Running> running;
  size_t next = 0;
  const auto t0 = std::chrono::steady_clock::now();
  auto elapsed = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(); };
  double last_print = 0;  // first progress line after 10 s, when there is progress to show
  size_t done = 0;
  while (next < jobs.size() || !running.empty()) {
    if (g_stop.load()) {
      // The trainers run in their own process groups, so a terminal's Ctrl-C reaches
      // only this process: pass it on once. Each saves a checkpoint and exits.
      for (auto& r : running) kill(r.pid, SIGINT);
      for (auto& r : running) waitpid(r.pid, nullptr, 0);
      break;
    }
    while (next < jobs.size() && static_cast<int>(running.size()) < std::max(1, parallel) && !g_stop.load()) {
      const TrainJob& j = jobs[next];
      if (run_finished(j.run_dir, j.steps)) {
        std::fprintf(stderr, "  %-22s already finished, skipped\n", j.label.c_str());
        ++next;
        ++done;
        continue;
      }
      // A trainer of this run from an earlier, killed comparison may still be saving
      // its last checkpoint (it was told to stop when its parent died): wait for it.
      for (int waited = 0; auto holder = io::dir_lock_holder(j.run_dir); ++waited) {
        if (waited == 0)
          std::fprintf(stderr, "  %-22s waiting for an earlier trainer of this run (pid %s) to save and exit\n",
                       j.label.c_str(), holder->c_str());
        if (waited >= 600 || g_stop.load())
          fail(j.run_dir, ": still in use by pid ", *holder, "; stop that process, then run the same command again");
        std::this_thread::sleep_for(std::chrono::milliseconds(500));
      }
      const bool resume = latest_checkpoint(j.run_dir).has_value();
      running.push_back({next, spawn(j, resume)});
      std::fprintf(stderr, "  %-22s %s (log: %s/train.log)\n", j.label.c_str(), resume ? "resumed" : "started",
                   j.run_dir.c_str());
      ++next;
    }
    for (size_t i = 0; i < running.size();) {
      int status = 0;
      const pid_t r = waitpid(running[i].pid, &status, WNOHANG);
      if (r == 0) { ++i; continue; }
      const TrainJob& j = jobs[running[i].job];
      if (r > 0 && WIFEXITED(status) && WEXITSTATUS(status) == kInterrupted) {
        // Interrupted and saved (Ctrl-C reached it first): stop the others the same way.
        g_stop.store(SIGINT);
        running.erase(running.begin() + static_cast<long>(i));
        continue;
      }
      if (r < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        for (auto& other : running)
          if (other.pid != running[i].pid) kill(other.pid, SIGINT);
        for (auto& other : running)
          if (other.pid != running[i].pid) waitpid(other.pid, nullptr, 0);
        const std::string why = WIFEXITED(status) ? cat("exit status ", WEXITSTATUS(status))
                                                  : cat("signal ", WIFSIGNALED(status) ? WTERMSIG(status) : 0);
        fail("training ", j.label, " failed (", why, "); see ", j.run_dir, "/train.log");
      }
      ++done;
      const Last l = last_metrics(j.run_dir);
      std::fprintf(stderr, "  %-22s done: %lld steps, final train loss %.4f [%zu/%zu runs, %.0f s]\n", j.label.c_str(),
                   static_cast<long long>(l.step), l.loss, done, jobs.size(), elapsed());
      running.erase(running.begin() + static_cast<long>(i));
    }
    if (!running.empty() && elapsed() - last_print >= 10.0) {
      last_print = elapsed();
      std::string line = cat("  [", static_cast<int>(elapsed()), " s]");
      for (const auto& r : running) {
        const TrainJob& j = jobs[r.job];
        const Last l = last_metrics(j.run_dir);
        char buf[160];
        std::snprintf(buf, sizeof buf, " | %s %lld/%lld loss %.3f", j.label.c_str(), static_cast<long long>(l.step),
                      static_cast<long long>(j.steps), l.loss);
        line += buf;
      }
      std::fprintf(stderr, "%s\n", line.c_str());
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  if (!g_stop.load()) return true;
  std::fprintf(stderr, "  interrupted after %.0f s: %zu of %zu runs finished, the others saved their progress\n",
               elapsed(), done, jobs.size());
  return false;
}

}  // namespace mot::compare
