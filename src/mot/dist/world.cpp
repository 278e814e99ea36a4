#include "mot/dist/world.hpp"

#include <sched.h>
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>

#ifdef MOT_MPI
#include <mpi.h>
static_assert(sizeof(MPI_Request) <= sizeof(mot::dist::Pending::req), "MPI_Request does not fit Pending");
#endif

namespace mot::dist {

namespace {

bool launched_by_mpi() {
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK"})
    if (const char* s = std::getenv(v); s && *s) return true;
  const char* n = std::getenv("SLURM_NTASKS");
  return n && std::atoi(n) > 1;
}

[[maybe_unused]] int launcher_size() {
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "SLURM_NTASKS"})
    if (const char* s = std::getenv(v); s && *s) return std::max(1, std::atoi(s));
  return 1;
}

[[maybe_unused]] void nap(int64_t ns) {
  timespec ts{0, static_cast<long>(ns)};
  ::nanosleep(&ts, nullptr);
}

#ifdef MOT_MPI
void check(int rc, const char* call, const char* what) {
  if (rc == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int n = 0;
  MPI_Error_string(rc, text, &n);
  throw CommError(cat(rank_prefix(), what, ": ", call, " failed (", std::string(text, static_cast<size_t>(n)),
                      "); another rank probably died"));
}
#endif

}  // namespace

World& World::join() {
  static World* w = [] {
    auto* x = new World();
    if (!launched_by_mpi()) return x;
#ifdef MOT_MPI
    int provided = 0;
    MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided);
    // Errors come back as return codes: each becomes one CommError line, not MPI's
    // default abort with a page of text.
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &x->rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &x->size_);
    x->mpi_ = true;
#else
    if (launcher_size() > 1)
      fail("this mot was built without MPI (install libopenmpi-dev and rebuild) but was started as one of ",
           launcher_size(), " processes");
#endif
    return x;
  }();
  return *w;
}

void World::finalize() {
#ifdef MOT_MPI
  if (mpi_) MPI_Finalize();
#endif
  mpi_ = false;
  size_ = 1;
  rank_ = 0;
}

std::string rank_prefix() {
  const World& w = World::join();
  return w.parallel() ? cat("rank ", w.rank(), "/", w.size(), ": ") : std::string();
}

void World::wait_request(void* req, const char* what) {
#ifdef MOT_MPI
  auto* r = static_cast<MPI_Request*>(req);
  using clock = std::chrono::steady_clock;
  const auto t0 = clock::now();
  // MPI moves data only inside its calls: a waiting rank polls without sleeping (a
  // yield lets a busy rank on the same core run) and only naps once the wait is long,
  // e.g. while rank 0 writes a checkpoint.
  for (;;) {
    int done = 0;
    check(MPI_Test(r, &done, MPI_STATUS_IGNORE), "MPI_Test", what);
    if (done) return;
    const double waited = std::chrono::duration<double>(clock::now() - t0).count();
    if (waited > timeout_s_)
      throw CommError(cat(rank_prefix(), what, ": no answer from the other ranks for ", static_cast<int64_t>(timeout_s_),
                          " s (a rank died or hangs; --comm-timeout sets the limit)"));
    if (probe_ && waited > 1.0)
      if (const int sig = probe_())
        throw CommError(cat(rank_prefix(), what, ": interrupted by signal ", sig, " while waiting for the other ranks"));
    if (waited < 0.5)
      sched_yield();
    else
      nap(200000);
  }
#else
  (void)req;
  (void)what;
#endif
}

void World::alltoallv(const float* send, const std::vector<int>& sc, const std::vector<int>& sd, float* recv,
                      const std::vector<int>& rc, const std::vector<int>& rd, Pending& p) {
#ifdef MOT_MPI
  if (mpi_) {
    check(MPI_Ialltoallv(send, sc.data(), sd.data(), MPI_FLOAT, recv, rc.data(), rd.data(), MPI_FLOAT, MPI_COMM_WORLD,
                         reinterpret_cast<MPI_Request*>(p.req)),
          "MPI_Ialltoallv", "gradient reduce-scatter");
    p.active = true;
    return;
  }
#endif
  std::memcpy(recv + rd[0], send + sd[0], sizeof(float) * static_cast<size_t>(sc[0]));
  p.active = false;
}

void World::allgatherv(float* data, const std::vector<int>& counts, const std::vector<int>& displs, Pending& p) {
#ifdef MOT_MPI
  if (mpi_) {
    check(MPI_Iallgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, data, counts.data(), displs.data(), MPI_FLOAT,
                          MPI_COMM_WORLD, reinterpret_cast<MPI_Request*>(p.req)),
          "MPI_Iallgatherv", "parameter all-gather");
    p.active = true;
    return;
  }
#endif
  (void)data, (void)counts, (void)displs;
  p.active = false;
}

bool World::test(Pending& p) {
  if (!p.active) return true;
#ifdef MOT_MPI
  int done = 0;
  check(MPI_Test(reinterpret_cast<MPI_Request*>(p.req), &done, MPI_STATUS_IGNORE), "MPI_Test", "collective");
  if (done) p.active = false;
  return done != 0;
#else
  return true;
#endif
}

void World::wait(Pending& p, const char* what) {
  if (!p.active) return;
  wait_request(p.req, what);
  p.active = false;
}

void World::allgather_bytes(const void* mine, size_t n, void* all, const char* what) {
#ifdef MOT_MPI
  if (mpi_) {
    MPI_Request r;
    check(MPI_Iallgather(mine, static_cast<int>(n), MPI_BYTE, all, static_cast<int>(n), MPI_BYTE, MPI_COMM_WORLD, &r),
          "MPI_Iallgather", what);
    wait_request(&r, what);
    return;
  }
#endif
  (void)what;
  std::memcpy(all, mine, n);
}

void World::allreduce_sum(double* values, size_t n, const char* what) {
#ifdef MOT_MPI
  if (mpi_) {
    MPI_Request r;
    check(MPI_Iallreduce(MPI_IN_PLACE, values, static_cast<int>(n), MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD, &r),
          "MPI_Iallreduce", what);
    wait_request(&r, what);
    return;
  }
#endif
  (void)values, (void)n, (void)what;
}

void World::broadcast_bytes(void* data, size_t n, const char* what) {
#ifdef MOT_MPI
  if (mpi_) {
    auto* b = static_cast<char*>(data);
    for (size_t off = 0; off < n;) {
      const size_t c = std::min<size_t>(n - off, size_t{1} << 30);
      MPI_Request r;
      check(MPI_Ibcast(b + off, static_cast<int>(c), MPI_BYTE, 0, MPI_COMM_WORLD, &r), "MPI_Ibcast", what);
      wait_request(&r, what);
      off += c;
    }
    return;
  }
#endif
  (void)data, (void)n, (void)what;
}

void World::broadcast_floats(float* data, size_t n, const char* what) { broadcast_bytes(data, n * sizeof(float), what); }

std::string World::broadcast_string(const std::string& s, const char* what) {
  uint64_t n = s.size();
  broadcast_bytes(&n, sizeof n, what);
  std::string out = root() ? s : std::string(n, '\0');
  broadcast_bytes(out.data(), n, what);
  return out;
}

void World::scatterv(const float* all, const std::vector<int>& counts, const std::vector<int>& displs, float* mine,
                     const char* what) {
#ifdef MOT_MPI
  if (mpi_) {
    MPI_Request r;
    check(MPI_Iscatterv(all, counts.data(), displs.data(), MPI_FLOAT, mine, counts[rank_], MPI_FLOAT, 0, MPI_COMM_WORLD,
                        &r),
          "MPI_Iscatterv", what);
    wait_request(&r, what);
    return;
  }
#endif
  (void)what;
  std::memcpy(mine, all + displs[0], sizeof(float) * static_cast<size_t>(counts[0]));
}

void World::gatherv(const float* mine, const std::vector<int>& counts, const std::vector<int>& displs, float* all,
                    const char* what) {
#ifdef MOT_MPI
  if (mpi_) {
    MPI_Request r;
    check(MPI_Igatherv(mine, counts[rank_], MPI_FLOAT, all, counts.data(), displs.data(), MPI_FLOAT, 0, MPI_COMM_WORLD,
                       &r),
          "MPI_Igatherv", what);
    wait_request(&r, what);
    return;
  }
#endif
  (void)what;
  std::memcpy(all + displs[0], mine, sizeof(float) * static_cast<size_t>(counts[0]));
}

void World::barrier(const char* what) {
#ifdef MOT_MPI
  if (mpi_) {
    MPI_Request r;
    check(MPI_Ibarrier(MPI_COMM_WORLD, &r), "MPI_Ibarrier", what);
    wait_request(&r, what);
  }
#endif
  (void)what;
}

void World::abort(int code) {
#ifdef MOT_MPI
  if (mpi_) MPI_Abort(MPI_COMM_WORLD, code);
#endif
  std::_Exit(code);
}

}  // namespace mot::dist
