#include "mot/data/autoencoder/conv_ops.hpp"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "mot/backend/cpu/fast_exp.hpp"
#include "mot/backend/cpu/gemm.hpp"
#include "mot/core/error.hpp"

namespace mot::data::conv {
namespace {

// Columns ox of an output row whose input column ox·s + kx − p lies inside [0, w):
// [lo, hi). Outside it im2col writes zeros (the padding).
struct Span {
  int lo, hi;
};
inline Span valid_span(int out, int in, int s, int kx, int p) {
  const int lo = kx >= p ? 0 : (p - kx + s - 1) / s;
  int hi = (in - 1 + p - kx) / s + 1;
  if (in - 1 + p - kx < 0) hi = 0;
  hi = hi < out ? hi : out;
  return {lo, hi > lo ? hi : lo};
}

// Elementwise passes are cheap per value: only split them when there is enough work
// to pay for waking the other threads.
constexpr int64_t kParallelMin = 1 << 15;

}  // namespace

void ConvGeom::check() const {
  if (!((k == 3 && (stride == 1 || stride == 2)) || (k == 1 && stride == 1)))
    fail("conv: unsupported kernel ", k, " with stride ", stride, " (3x3 stride 1 or 2, or 1x1 stride 1)");
  if (cin < 1 || cout < 1 || n < 0 || h < 1 || w < 1)
    fail("conv: bad geometry (", cin, " -> ", cout, " channels, batch ", n, ", ", h, "x", w, ")");
}

namespace {

// One row (ky, kx) of a 3x3 stride-1 im2col for one input plane (H x W, padding 1): the
// plane shifted by (ky − 1, kx − 1) as one flat copy (input columns that would wrap to
// the neighbouring row are exactly the ones the padding zeroes), then the padding.
void im2col_plane_s1(const float* src, int H, int W, int ky, int kx, float* dst) {
  const int64_t plane = static_cast<int64_t>(H) * W;
  const int64_t shift = static_cast<int64_t>(ky - 1) * W + (kx - 1);  // dst[j] = src[j + shift]
  const int oy0 = ky == 0 ? 1 : 0, oy1 = ky == 2 ? H - 1 : H;  // rows that read the image
  if (oy1 <= oy0) {
    std::memset(dst, 0, sizeof(float) * plane);
    return;
  }
  const int64_t j0 = std::max<int64_t>(static_cast<int64_t>(oy0) * W, -shift);
  const int64_t j1 = std::min<int64_t>(static_cast<int64_t>(oy1) * W, plane - shift);
  std::memset(dst, 0, sizeof(float) * j0);
  std::memcpy(dst + j0, src + j0 + shift, sizeof(float) * (j1 - j0));
  std::memset(dst + j1, 0, sizeof(float) * (plane - j1));
  if (kx != 1) {
    const int col = kx == 0 ? 0 : W - 1;
    for (int oy = oy0; oy < oy1; ++oy) dst[static_cast<int64_t>(oy) * W + col] = 0.0f;
  }
}

}  // namespace

void im2col(const ConvGeom& g, const float* x, float* cols) {
  if (g.k == 3 && g.stride == 1) {
    const int64_t N = g.n, P = g.out_plane(), plane = static_cast<int64_t>(g.h) * g.w;
#pragma omp parallel for collapse(2) schedule(static) if (g.col_values() >= kParallelMin)
    for (int64_t r = 0; r < g.col_rows(); ++r)
      for (int64_t n = 0; n < N; ++n)
        im2col_plane_s1(x + (r / 9 * N + n) * plane, g.h, g.w, static_cast<int>(r / 3 % 3), static_cast<int>(r % 3),
                        cols + r * P + n * plane);
    return;
  }
  const int H = g.h, W = g.w, Ho = g.ho(), Wo = g.wo(), s = g.stride, k = g.k, p = g.pad();
  const int64_t N = g.n, rows = g.col_rows(), P = g.out_plane();
  const int64_t plane_in = static_cast<int64_t>(H) * W, plane_out = static_cast<int64_t>(Ho) * Wo;
#pragma omp parallel for collapse(2) schedule(static) if (rows * P >= kParallelMin)
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t n = 0; n < N; ++n) {
      const int ci = static_cast<int>(r / (k * k)), ky = static_cast<int>(r / k % k), kx = static_cast<int>(r % k);
      const float* src = x + (ci * N + n) * plane_in;
      float* dst = cols + r * P + n * plane_out;
      const Span sp = valid_span(Wo, W, s, kx, p);
      for (int oy = 0; oy < Ho; ++oy, dst += Wo) {
        const int iy = oy * s + ky - p;
        if (iy < 0 || iy >= H) {
          std::memset(dst, 0, sizeof(float) * Wo);
          continue;
        }
        const float* row = src + static_cast<int64_t>(iy) * W;
        const int off = kx - p;  // output column ox reads input column ox·s + off
        for (int ox = 0; ox < sp.lo; ++ox) dst[ox] = 0.0f;
        if (s == 1) std::memcpy(dst + sp.lo, row + sp.lo + off, sizeof(float) * (sp.hi - sp.lo));
        else
          for (int ox = sp.lo; ox < sp.hi; ++ox) dst[ox] = row[ox * s + off];
        for (int ox = sp.hi; ox < Wo; ++ox) dst[ox] = 0.0f;
      }
    }
}

void col2im(const ConvGeom& g, const float* dcols, float* dx) {
  const int H = g.h, W = g.w, Ho = g.ho(), Wo = g.wo(), s = g.stride, k = g.k, p = g.pad();
  const int64_t N = g.n, P = g.out_plane();
  const int64_t plane_in = static_cast<int64_t>(H) * W, plane_out = static_cast<int64_t>(Ho) * Wo;
  // One thread owns each input plane and adds the k·k contributions in a fixed order.
#pragma omp parallel for collapse(2) schedule(static) if (g.col_values() >= kParallelMin)
  for (int64_t ci = 0; ci < g.cin; ++ci)
    for (int64_t n = 0; n < N; ++n) {
      float* d = dx + (ci * N + n) * plane_in;
      std::memset(d, 0, sizeof(float) * plane_in);
      for (int ky = 0; ky < k; ++ky)
        for (int kx = 0; kx < k; ++kx) {
          const float* src = dcols + ((ci * k + ky) * k + kx) * P + n * plane_out;
          const Span sp = valid_span(Wo, W, s, kx, p);
          for (int oy = 0; oy < Ho; ++oy, src += Wo) {
            const int iy = oy * s + ky - p;
            if (iy < 0 || iy >= H) continue;
            float* row = d + static_cast<int64_t>(iy) * W;
            const int off = kx - p;
            if (s == 1) {
#pragma omp simd
              for (int ox = sp.lo; ox < sp.hi; ++ox) row[ox + off] += src[ox];
            } else {
              for (int ox = sp.lo; ox < sp.hi; ++ox) row[ox * s + off] += src[ox];
            }
          }
        }
    }
}

void conv_forward(const ConvGeom& g, const float* cols, const float* w, const float* b, float* y) {
  const int64_t P = g.out_plane(), K = g.col_rows();
  cpu::gemm_nn(g.cout, P, K, w, K, cols, P, y, P, 0.0f);
#pragma omp parallel for schedule(static) if (g.out_values() >= kParallelMin)
  for (int co = 0; co < g.cout; ++co) {
    float* row = y + co * P;
    const float bias = b[co];
#pragma omp simd
    for (int64_t j = 0; j < P; ++j) row[j] += bias;
  }
}

namespace {

bool flipped_input_grad(const ConvGeom& g) { return g.k == 3 && g.stride == 1 && g.cout <= 2 * g.cin; }

// The geometry of the flipped convolution: dy (cout channels, ho x wo) to dx (cin).
ConvGeom flipped(const ConvGeom& g) { return ConvGeom{g.cout, g.cin, 3, 1, g.n, g.ho(), g.wo()}; }

}  // namespace

int64_t backward_scratch_values(const ConvGeom& g) {
  if (g.direct()) return 0;
  if (flipped_input_grad(g)) return flipped(g).col_values() + g.weight_values();
  return g.col_values();
}

void conv_backward(const ConvGeom& g, const float* cols, const float* w, const float* dy, float* dw, float* db,
                   float* dx, float* scratch) {
  const int64_t P = g.out_plane(), K = g.col_rows();
  cpu::gemm_nt(g.cout, K, P, dy, P, cols, P, dw, K, 0.0f);
  // Bias gradients in double, each row summed by one thread in a fixed order: 8
  // interleaved partial sums (so the adds vectorise), then added in lane order.
#pragma omp parallel for schedule(static) if (g.out_values() >= kParallelMin)
  for (int co = 0; co < g.cout; ++co) {
    const float* row = dy + co * P;
    double lane[8] = {};
    int64_t j = 0;
    for (; j + 8 <= P; j += 8)
#pragma GCC unroll 8
      for (int l = 0; l < 8; ++l) lane[l] += row[j + l];
    for (; j < P; ++j) lane[j % 8] += row[j];
    double sum = 0;
    for (double v : lane) sum += v;
    db[co] = static_cast<float>(sum);
  }
  if (!dx) return;
  if (g.direct()) {
    cpu::gemm_tn(K, P, g.cout, w, K, dy, P, dx, P, 0.0f);
  } else if (flipped_input_grad(g)) {
    const ConvGeom f = flipped(g);
    float* wf = scratch;                       // [cin][cout][3][3]
    float* dycols = scratch + g.weight_values();
    for (int ci = 0; ci < g.cin; ++ci)
      for (int co = 0; co < g.cout; ++co)
        for (int t = 0; t < 9; ++t) wf[(ci * g.cout + co) * 9 + t] = w[(co * g.cin + ci) * 9 + (8 - t)];
    im2col(f, dy, dycols);
    cpu::gemm_nn(g.cin, P, f.col_rows(), wf, f.col_rows(), dycols, P, dx, P, 0.0f);
  } else {
    cpu::gemm_tn(K, P, g.cout, w, K, dy, P, scratch, P, 0.0f);
    col2im(g, scratch, dx);
  }
}

void upsample2_forward(int64_t planes, int h, int w, const float* x, float* y) {
  const int64_t in = static_cast<int64_t>(h) * w, out = 4 * in;
#pragma omp parallel for schedule(static) if (planes * out >= kParallelMin)
  for (int64_t q = 0; q < planes; ++q) {
    const float* src = x + q * in;
    float* dst = y + q * out;
    for (int iy = 0; iy < h; ++iy) {
      float* r0 = dst + static_cast<int64_t>(2 * iy) * (2 * w);
      float* r1 = r0 + 2 * w;
      const float* s = src + static_cast<int64_t>(iy) * w;
      for (int ix = 0; ix < w; ++ix) r0[2 * ix] = r0[2 * ix + 1] = s[ix];
      std::memcpy(r1, r0, sizeof(float) * 2 * w);
    }
  }
}

void upsample2_backward(int64_t planes, int h, int w, const float* dy, float* dx) {
  const int64_t in = static_cast<int64_t>(h) * w, out = 4 * in;
#pragma omp parallel for schedule(static) if (planes * out >= kParallelMin)
  for (int64_t q = 0; q < planes; ++q) {
    const float* src = dy + q * out;
    float* dst = dx + q * in;
    for (int iy = 0; iy < h; ++iy) {
      const float* r0 = src + static_cast<int64_t>(2 * iy) * (2 * w);
      const float* r1 = r0 + 2 * w;
      float* d = dst + static_cast<int64_t>(iy) * w;
      for (int ix = 0; ix < w; ++ix) d[ix] = (r0[2 * ix] + r0[2 * ix + 1]) + (r1[2 * ix] + r1[2 * ix + 1]);
    }
  }
}

void silu_forward(int64_t count, const float* z, float* a) {
#pragma omp parallel for simd schedule(static) if (count >= kParallelMin)
  for (int64_t i = 0; i < count; ++i) a[i] = z[i] / (1.0f + cpu::fast_exp(-z[i]));
}

void silu_backward(int64_t count, const float* z, const float* da, float* dz) {
#pragma omp parallel for simd schedule(static) if (count >= kParallelMin)
  for (int64_t i = 0; i < count; ++i) {
    const float sg = 1.0f / (1.0f + cpu::fast_exp(-z[i]));
    dz[i] = da[i] * sg * (1.0f + z[i] * (1.0f - sg));
  }
}

void tanh_forward(int64_t count, const float* z, float* y) {
#pragma omp parallel for schedule(static) if (count >= kParallelMin)
  for (int64_t i = 0; i < count; ++i) y[i] = std::tanh(z[i]);
}

void tanh_backward(int64_t count, const float* y, const float* dy, float* dz) {
#pragma omp parallel for simd schedule(static) if (count >= kParallelMin)
  for (int64_t i = 0; i < count; ++i) dz[i] = dy[i] * (1.0f - y[i] * y[i]);
}

}  // namespace mot::data::conv
