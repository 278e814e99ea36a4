// A real-input FFT of one fixed size through FFTW's single-precision API (Debian
// libfftw3-dev, fftw3f). The forward and inverse plans are made once, in the
// constructor, and reused for every frame: FFTW planning is slow and must never run
// per frame.
//
// Plans use FFTW_ESTIMATE, so the plan (and therefore every result, bit for bit)
// depends only on the size and the machine, not on timing measurements. FFTW's planner
// is not thread-safe; construction and destruction take a process-wide lock, while
// forward()/inverse() on different RealFft objects may run concurrently. One object
// must not be used by two threads at once (it owns its work buffers).
#pragma once
#include <complex>
#include <cstddef>

namespace mot::audio {

class RealFft {
 public:
  explicit RealFft(int n);  // n >= 2; mot::Error otherwise
  ~RealFft();
  RealFft(const RealFft&) = delete;
  RealFft& operator=(const RealFft&) = delete;

  int size() const { return n_; }
  int bins() const { return n_ / 2 + 1; }

  // out[k] = sum_t in[t] exp(-2 pi i k t / n), k = 0 .. n/2 (unnormalised).
  void forward(const float* in, std::complex<float>* out);
  // out[t] = sum over the full Hermitian spectrum of in[k] exp(+2 pi i k t / n): the
  // unnormalised inverse, so inverse(forward(x)) = n * x.
  void inverse(const std::complex<float>* in, float* out);

 private:
  int n_ = 0;
  float* real_ = nullptr;  // n floats, FFTW-aligned
  void* spec_ = nullptr;   // n/2+1 fftwf_complex, FFTW-aligned
  void* fwd_ = nullptr;    // fftwf_plan
  void* inv_ = nullptr;    // fftwf_plan
};

}  // namespace mot::audio
