#include "mot/audio/fft.hpp"

#include <fftw3.h>

#include <cstring>
#include <mutex>

#include "mot/core/error.hpp"

namespace mot::audio {
namespace {

// FFTW's planner (plan creation and destruction) touches global state.
std::mutex& planner_lock() {
  static std::mutex m;
  return m;
}

}  // namespace

RealFft::RealFft(int n) : n_(n) {
  if (n < 2 || n > (1 << 24)) fail("fft: size ", n, " is not in [2, 2^24]");
  std::lock_guard<std::mutex> lock(planner_lock());
  real_ = fftwf_alloc_real(static_cast<size_t>(n));
  fftwf_complex* spec = fftwf_alloc_complex(static_cast<size_t>(n / 2 + 1));
  spec_ = spec;
  if (!real_ || !spec) {
    fftwf_free(real_);
    fftwf_free(spec);
    fail("fft: out of memory for size ", n);
  }
  // FFTW_DESTROY_INPUT lets the c2r transform overwrite its input: we always refill
  // the buffer before executing.
  fwd_ = fftwf_plan_dft_r2c_1d(n, real_, spec, FFTW_ESTIMATE);
  inv_ = fftwf_plan_dft_c2r_1d(n, spec, real_, FFTW_ESTIMATE | FFTW_DESTROY_INPUT);
  if (!fwd_ || !inv_) {
    if (fwd_) fftwf_destroy_plan(static_cast<fftwf_plan>(fwd_));
    if (inv_) fftwf_destroy_plan(static_cast<fftwf_plan>(inv_));
    fftwf_free(real_);
    fftwf_free(spec);
    fail("fft: FFTW could not plan a transform of size ", n);
  }
}

RealFft::~RealFft() {
  std::lock_guard<std::mutex> lock(planner_lock());
  fftwf_destroy_plan(static_cast<fftwf_plan>(fwd_));
  fftwf_destroy_plan(static_cast<fftwf_plan>(inv_));
  fftwf_free(real_);
  fftwf_free(spec_);
}

// std::complex<float> and fftwf_complex (float[2]) have the same layout (the C++
// standard guarantees it for std::complex), so spectra are copied as raw floats.
void RealFft::forward(const float* in, std::complex<float>* out) {
  std::memcpy(real_, in, sizeof(float) * static_cast<size_t>(n_));
  fftwf_execute(static_cast<fftwf_plan>(fwd_));
  std::memcpy(static_cast<void*>(out), spec_, sizeof(fftwf_complex) * static_cast<size_t>(bins()));
}

void RealFft::inverse(const std::complex<float>* in, float* out) {
  std::memcpy(spec_, static_cast<const void*>(in), sizeof(fftwf_complex) * static_cast<size_t>(bins()));
  fftwf_execute(static_cast<fftwf_plan>(inv_));
  std::memcpy(out, real_, sizeof(float) * static_cast<size_t>(n_));
}

}  // namespace mot::audio
