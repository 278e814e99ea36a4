// Mixture-of-experts kernels (expert choice; the schedule is model/moe_block.cpp):
// router softmax, the choice itself, gathering each expert's picks into contiguous
// rows, and combining the experts' outputs back, each with its backward. Combines add
// experts in a fixed order: deterministic, no atomics.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "mot/backend/cpu/cpu_backend.hpp"

namespace mot::cpu {

void CpuBackend::gather_rows(ConstMat src, const int32_t* rows, Mat dst) {
  const int64_t n = dst.rows, d = dst.cols;
#pragma omp parallel for schedule(static)
  for (int64_t j = 0; j < n; ++j) std::memcpy(dst.row(j), src.row(rows[j]), sizeof(float) * d);
}

// Row-wise softmax in fp32 with exact exp: the scores decide which positions an expert
// picks, so they are computed the accurate way.
void CpuBackend::softmax_rows(Mat z) {
  const int64_t n = z.rows, E = z.cols;
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < n; ++r) {
    float* row = z.row(r);
    float mx = row[0];
    for (int64_t e = 1; e < E; ++e) mx = std::max(mx, row[e]);
    float sum = 0.0f;
    for (int64_t e = 0; e < E; ++e) sum += row[e] = std::exp(row[e] - mx);
    const float inv = 1.0f / sum;
    for (int64_t e = 0; e < E; ++e) row[e] *= inv;
  }
}

void CpuBackend::softmax_rows_backward(ConstMat p, Mat dp) {
  const int64_t n = dp.rows, E = dp.cols;
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < n; ++r) {
    const float* pr = p.row(r);
    float* g = dp.row(r);
    float dot = 0.0f;
    for (int64_t e = 0; e < E; ++e) dot += pr[e] * g[e];
    for (int64_t e = 0; e < E; ++e) g[e] = pr[e] * (g[e] - dot);
  }
}

// The order (score, then position) is total, so the result does not depend on the sort
// algorithm or on threads; a NaN score ranks last (the loss check reports the NaN; the
// sort must still see a strict weak order). Every (pool, expert) touches only its own
// members' slots: no races.
void CpuBackend::expert_choice(const ExpertChoice& c, ConstMat prob, int32_t* pick, int32_t* slot) {
  const int64_t E = c.experts, N = c.rows;
  int32_t* order_all = scratch_.expert_order;
#pragma omp parallel for collapse(2) schedule(dynamic)
  for (int64_t p = c.pool0; p < c.pool1; ++p)
    for (int64_t e = 0; e < E; ++e) {
      const ExpertPool& pool = c.pools[p];
      const int64_t n = pool.size, k = n / E;  // capacity 1
      const int32_t* mem = c.members + pool.begin;
      for (int64_t i = 0; i < n; ++i) slot[static_cast<int64_t>(mem[i]) * E + e] = -1;
      if (k == 0) continue;
      int32_t* order = order_all + e * N + pool.begin;  // pool-local indices = position order
      for (int64_t i = 0; i < n; ++i) order[i] = static_cast<int32_t>(i);
      auto score = [&](int32_t i) {
        const float v = prob.row(mem[i])[e];
        return std::isnan(v) ? -std::numeric_limits<float>::infinity() : v;
      };
      std::partial_sort(order, order + k, order + n, [&](int32_t a, int32_t b) {
        const float sa = score(a), sb = score(b);
        return sa > sb || (sa == sb && a < b);
      });
      const int64_t first = e * c.k_total + pool.pick0;
      for (int64_t j = 0; j < k; ++j) {
        const int32_t s = mem[order[j]];
        pick[first + j] = s;
        slot[static_cast<int64_t>(s) * E + e] = static_cast<int32_t>(first + j);
      }
    }
}

void CpuBackend::expert_combine(int64_t s0, int64_t s1, ConstMat prob, const int32_t* slot, ConstMat y, Mat out) {
  const int64_t E = prob.cols, d = out.cols;
#pragma omp parallel for schedule(static)
  for (int64_t s = s0; s < s1; ++s) {
    float* o = out.row(s);
    std::memset(o, 0, sizeof(float) * d);
    for (int64_t e = 0; e < E; ++e) {
      const int32_t r = slot[s * E + e];
      if (r < 0) continue;
      const float p = prob.row(s)[e];
      const float* yr = y.row(r);
#pragma omp simd
      for (int64_t i = 0; i < d; ++i) o[i] += p * yr[i];
    }
  }
}

void CpuBackend::expert_combine_backward(int64_t s0, int64_t s1, ConstMat prob, const int32_t* slot, ConstMat g,
                                         Mat dg, Mat dy, Mat dprob) {
  const int64_t E = prob.cols, F = g.cols, d = dy.cols;
#pragma omp parallel for schedule(static)
  for (int64_t s = s0; s < s1; ++s)
    for (int64_t e = 0; e < E; ++e) {
      const int64_t r = slot[s * E + e];
      float& dp = dprob.row(s - s0)[e];
      if (r < 0) { dp = 0.0f; continue; }
      const float p = prob.row(s)[e];
      float* dgr = dg.row(r);
      const float* gr = g.row(r);
      float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
      for (int64_t i = 0; i < F; ++i) dot += gr[i] * dgr[i];
      dp = dot;
#pragma omp simd
      for (int64_t i = 0; i < F; ++i) dgr[i] *= p;
      float* Dr = dy.row(r);
#pragma omp simd
      for (int64_t i = 0; i < d; ++i) Dr[i] *= p;
    }
}

void CpuBackend::expert_scatter_add(int64_t s0, int64_t s1, const int32_t* slot, int64_t experts, ConstMat dx,
                                    Mat din) {
  const int64_t E = experts, d = din.cols;
#pragma omp parallel for schedule(static)
  for (int64_t s = s0; s < s1; ++s) {
    float* o = din.row(s);
    for (int64_t e = 0; e < E; ++e) {
      const int32_t r = slot[s * E + e];
      if (r < 0) continue;
      const float* x = dx.row(r);
#pragma omp simd
      for (int64_t i = 0; i < d; ++i) o[i] += x[i];
    }
  }
}

int64_t CpuBackend::expert_threshold_pick(int64_t s0, int64_t s1, ConstMat prob, int64_t e, float threshold,
                                          int32_t* pick) {
  int64_t n = 0;
  for (int64_t s = s0; s < s1; ++s)
    if (prob.row(s)[e] >= threshold) pick[n++] = static_cast<int32_t>(s);
  return n;
}

void CpuBackend::expert_accumulate(int64_t s0, int64_t s1, ConstMat prob, int64_t e, const int32_t* pick, int64_t n,
                                   ConstMat y, Mat out, bool first) {
  const int64_t d = out.cols;
  if (first)
    for (int64_t s = s0; s < s1; ++s) std::memset(out.row(s), 0, sizeof(float) * d);
#pragma omp parallel for schedule(static) if (n * d > 65536)
  for (int64_t j = 0; j < n; ++j) {  // picks are distinct rows: no two iterations write one row
    const int32_t s = pick[j];
    const float p = prob.row(s)[e];
    float* o = out.row(s);
    const float* yr = y.row(j);
#pragma omp simd
    for (int64_t i = 0; i < d; ++i) o[i] += p * yr[i];
  }
}

}  // namespace mot::cpu
