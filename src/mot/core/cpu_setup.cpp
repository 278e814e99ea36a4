#include "mot/core/cpu_setup.hpp"

#include <cblas.h>
#include <omp.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

extern "C" char* openblas_get_corename(void);

namespace mot {

namespace {

bool cpu_has_avx512() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
}

[[noreturn]] void reexec(char** argv, const char* coretype, const char* stage) {
  setenv("OPENBLAS_CORETYPE", coretype, 1);
  setenv("MOT_BLAS_STAGE", stage, 1);
  execv("/proc/self/exe", argv);
  // If exec fails we cannot change kernels; continue as we are would be wrong here
  // because the stage variable is set, so say why and keep going on the old kernels.
  unsetenv("MOT_BLAS_STAGE");
  std::_Exit(127);
}

// Multiplies two small matrices with OpenBLAS and with a loop; true if they agree.
bool blas_gives_right_answers() {
  const int n = 67, k = 45, m = 53;
  std::vector<float> a(n * k), b(m * k), c(n * m), r(n * m);
  for (int i = 0; i < n * k; ++i) a[i] = static_cast<float>((i * 37 % 101) - 50) / 64.0f;
  for (int i = 0; i < m * k; ++i) b[i] = static_cast<float>((i * 53 % 97) - 48) / 64.0f;
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, m, k, 1.0f, a.data(), k, b.data(), k, 0.0f, c.data(), m);
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < m; ++j) {
      double s = 0;
      for (int p = 0; p < k; ++p) s += static_cast<double>(a[i * k + p]) * b[j * k + p];
      if (std::fabs(s - c[i * m + j]) > 1e-3) return false;
    }
  return true;
}

}  // namespace

void ensure_fast_blas(int argc, char** argv) {
  (void)argc;
  const char* forced = std::getenv("MOT_BLAS_CORETYPE");
  const char* current = std::getenv("OPENBLAS_CORETYPE");
  const char* stage = std::getenv("MOT_BLAS_STAGE");
  if (forced && *forced) {
    if (!current || std::strcmp(current, forced) != 0) reexec(argv, forced, "forced");
    return;
  }
  if (!stage) {
    if (cpu_has_avx512() && (!current || std::strcmp(current, "SkylakeX") != 0)) reexec(argv, "SkylakeX", "avx512");
    return;
  }
  if (std::strcmp(stage, "avx512") == 0 && !blas_gives_right_answers()) reexec(argv, "Haswell", "fallback");
}

const char* blas_core_name() { return openblas_get_corename(); }

void set_threads(int n) {
  if (n > 0) omp_set_num_threads(n);
}

int thread_count() { return omp_get_max_threads(); }

}  // namespace mot
