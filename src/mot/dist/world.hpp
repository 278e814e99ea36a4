// The processes of one data-parallel training job (DESIGN: data parallelism): rank and
// size from the launcher (`mpirun`/`srun` through OpenMPI), and the few collectives the
// trainer needs, every one of them with a deadline. A rank that dies or hangs makes the
// others fail with one clear line after `timeout` seconds instead of waiting forever.
//
// Without a launcher (or in a build without MPI) the world is one process and every
// operation is a copy: the single-process trainer never calls into MPI.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "mot/core/error.hpp"

namespace mot::dist {

// A rank could not finish a collective: a peer died, hangs, or MPI reported an error.
// The trainer turns it into one error line and ends the whole job (MPI_Abort), since
// the peers cannot agree on anything any more.
struct CommError : Error {
  using Error::Error;
};

// One outstanding non-blocking collective (an MPI_Request, or nothing when single).
struct Pending {
  alignas(8) unsigned char req[16] = {};  // an MPI_Request, held here so this header needs no <mpi.h>
  bool active = false;
};

class World {
 public:
  // Joins the job this process was started in: MPI when a launcher's environment is
  // present (OMPI_COMM_WORLD_SIZE, PMIX_RANK, PMI_RANK, or SLURM_NTASKS > 1) and the
  // build has MPI; otherwise one process. Fails when launched by a launcher into a
  // build without MPI and more than one process was asked for.
  static World& join();
  // MPI_Finalize, once every rank is done (a normal end, or an error all ranks share).
  void finalize();
  World(const World&) = delete;
  World& operator=(const World&) = delete;

  int rank() const { return rank_; }
  int size() const { return size_; }
  bool root() const { return rank_ == 0; }
  bool parallel() const { return size_ > 1; }
  void set_timeout(double seconds) { timeout_s_ = seconds; }
  double timeout() const { return timeout_s_; }
  // Called by waits while they poll: a non-zero return (a signal number) makes a wait
  // that has lasted over a second give up with that signal in its error.
  void set_interrupt_probe(int (*probe)()) { probe_ = probe; }

  // Non-blocking float all-to-all with per-rank counts and displacements (in floats):
  // the reduce-scatter of data_parallel.cpp. Buffers must stay untouched until waited.
  void alltoallv(const float* send, const std::vector<int>& send_counts, const std::vector<int>& send_displs,
                 float* recv, const std::vector<int>& recv_counts, const std::vector<int>& recv_displs, Pending& p);
  // Non-blocking all-gather of per-rank float ranges into `data` (in place: each rank's
  // own range is already there).
  void allgatherv(float* data, const std::vector<int>& counts, const std::vector<int>& displs, Pending& p);
  // Lets MPI progress outstanding requests (overlap with compute); true when done.
  bool test(Pending& p);
  // Waits with the deadline; `what` names the operation in the error.
  void wait(Pending& p, const char* what);

  // Blocking (with the deadline) helpers.
  void allgather_bytes(const void* mine, size_t n, void* all, const char* what);  // all: size() * n bytes
  void allreduce_sum(double* values, size_t n, const char* what);  // exact only for sums with one non-zero term
  void broadcast_bytes(void* data, size_t n, const char* what);    // from rank 0
  void broadcast_floats(float* data, size_t n, const char* what);  // from rank 0, in chunks below 2^31
  std::string broadcast_string(const std::string& s, const char* what);
  // Rank 0 sends rank r the floats [displs[r], displs[r] + counts[r]) of `all`; each rank
  // receives its part into `mine`. And the reverse.
  void scatterv(const float* all, const std::vector<int>& counts, const std::vector<int>& displs, float* mine,
                const char* what);
  void gatherv(const float* mine, const std::vector<int>& counts, const std::vector<int>& displs, float* all,
               const char* what);
  void barrier(const char* what);

  // Ends the whole job now (MPI_Abort): after a rank-local error the peers cannot be
  // reached in step any more. Never returns.
  [[noreturn]] void abort(int code);

 private:
  World() = default;
  void wait_request(void* req, const char* what);
  int rank_ = 0, size_ = 1;
  bool mpi_ = false;
  double timeout_s_ = 300.0;
  int (*probe_)() = nullptr;
};

// "rank R/N: " in a parallel job, "" otherwise: the prefix of rank-local messages.
std::string rank_prefix();

}  // namespace mot::dist
