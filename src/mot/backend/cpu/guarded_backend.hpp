// A test double of a device backend, on the CPU: the CPU backend's kernels behind the
// contract a GPU backend imposes on the model (backend.hpp: host_memory() false).
// After any kernel call its arena is unmapped for the host (mprotect PROT_NONE) until
// synchronize(), upload() or download(), as a GPU's memory is busy until then; so a
// host read or write of arena memory that a real device backend would race with (a
// missing synchronize, a table not uploaded, a loss read too early) crashes the test
// that makes it, on any machine, with no GPU. Results are the CPU backend's, bit for
// bit, except where the model takes a device path (clipping sums on the backend).
//
// Selected by MOT_GUARD_DEVICE_MEMORY=1 in place of the CPU backend (make_backend);
// scripts/test runs the training and parity suites so.
#pragma once
#include <memory>

#include "mot/backend/backend.hpp"

namespace mot::cpu {

class CpuBackend;

std::unique_ptr<Backend> make_guarded_backend(Precision p);

}  // namespace mot::cpu
