// Process start-up for full CPU speed with no user action.
//
// The environment here sets OPENBLAS_CORETYPE=Haswell (older OpenBLAS builds
// mis-detect newer CPUs), which pins OpenBLAS to AVX2 kernels at half the FMA
// throughput of an AVX-512 machine. OpenBLAS reads the variable when the library is
// loaded, i.e. before main(), so on an AVX-512 CPU `mot` sets it to SkylakeX and
// re-executes itself once. After the re-exec a tiny GEMM is checked against a plain
// loop; if the AVX-512 kernels give wrong results, `mot` re-executes with the
// Haswell kernels instead. MOT_BLAS_CORETYPE=<name> forces a kernel set.
#pragma once

namespace mot {

void ensure_fast_blas(int argc, char** argv);
const char* blas_core_name();  // what OpenBLAS runs with, for logs and bench output
// Sets the OpenMP thread count (0 = all cores) used by both our loops and OpenBLAS.
void set_threads(int n);
int thread_count();

}  // namespace mot
