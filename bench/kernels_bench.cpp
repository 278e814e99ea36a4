// Google Benchmark micro-benchmarks of the CPU kernels, with GFLOP/s or GB/s
// counters. Run: build/bench/mot_kernel_bench [--benchmark_filter=Attention]
#include <benchmark/benchmark.h>

#include <cstring>
#include <vector>

#include "mot/backend/cpu/attention.hpp"
#include "mot/backend/cpu/bf16.hpp"
#include "mot/backend/cpu/gemm.hpp"
#include "mot/backend/cpu/kernels.hpp"
#include "mot/backend/cpu/matmul.hpp"
#include "mot/core/rng.hpp"

namespace {

std::vector<float> random(size_t n, uint64_t seed) {
  mot::Rng r(seed);
  std::vector<float> v(n);
  for (auto& x : v) x = static_cast<float>(r.uniform() - 0.5);
  return v;
}

// Y[M,N] = X[M,K] · W[N,K]ᵀ: a projection of M tokens (the forward GEMM shape).
void BM_GemmNT(benchmark::State& st) {
  const int64_t M = st.range(0), N = st.range(1), K = st.range(2);
  auto a = random(M * K, 1), b = random(N * K, 2), c = random(M * N, 3);
  for (auto _ : st) mot::cpu::gemm_nt(M, N, K, a.data(), K, b.data(), K, c.data(), N, 0.0f);
  st.counters["GFLOP/s"] = benchmark::Counter(2.0 * M * N * K, benchmark::Counter::kIsIterationInvariantRate,
                                              benchmark::Counter::kIs1000);
}
BENCHMARK(BM_GemmNT)->Args({4096, 1536, 512})->Args({4096, 2816, 512})->Args({4096, 512, 1408})->Args({1024, 512, 512})
    ->Unit(benchmark::kMillisecond);

// The same projection issued per modality as MoT does: rows split 1:3 (text:image in
// the benchmark layout), each part with its own weights. Compare with BM_GemmNT on
// the same total M: the cost of untying is the efficiency lost on the smaller GEMMs.
void BM_GemmNTSplit(benchmark::State& st) {
  const int64_t M = st.range(0), N = st.range(1), K = st.range(2), M0 = M / 4;
  auto a = random(M * K, 1), b0 = random(N * K, 2), b1 = random(N * K, 4), c = random(M * N, 3);
  for (auto _ : st) {
    mot::cpu::gemm_nt(M0, N, K, a.data(), K, b0.data(), K, c.data(), N, 0.0f);
    mot::cpu::gemm_nt(M - M0, N, K, a.data() + M0 * K, K, b1.data(), K, c.data() + M0 * N, N, 0.0f);
  }
  st.counters["GFLOP/s"] = benchmark::Counter(2.0 * M * N * K, benchmark::Counter::kIsIterationInvariantRate,
                                              benchmark::Counter::kIs1000);
}
BENCHMARK(BM_GemmNTSplit)->Args({4096, 1536, 512})->Args({4096, 2816, 512})->Unit(benchmark::kMillisecond);

// The bf16 projection as the model runs it: weights already rounded (once per step),
// the activation operand rounded into scratch on every call, then the GEMM.
void BM_GemmNTBf16(benchmark::State& st) {
  const int64_t M = st.range(0), N = st.range(1), K = st.range(2);
  auto a = random(M * K, 1), b = random(N * K, 2), c = random(M * N, 3), sa = random(M * K, 4), sb = random(M * K, 5);
  mot::cpu::round_bf16_copy(b.data(), b.data(), N * K);
  mot::cpu::Matmul mm;
  mm.set_bf16(b.data(), b.data() + b.size(), sa.data(), sb.data(), M * K);
  for (auto _ : st) mm.nt(M, N, K, a.data(), K, b.data(), K, c.data(), N, 0.0f);
  st.counters["GFLOP/s"] = benchmark::Counter(2.0 * M * N * K, benchmark::Counter::kIsIterationInvariantRate,
                                              benchmark::Counter::kIs1000);
}
BENCHMARK(BM_GemmNTBf16)->Args({4096, 1536, 512})->Args({4096, 512, 1408})->Unit(benchmark::kMillisecond);

// Rounding an fp32 operand to bf16 (read 4 + write 4 bytes per value).
void BM_RoundBf16(benchmark::State& st) {
  const int64_t n = st.range(0);
  auto x = random(n, 1), y = random(n, 2);
  for (auto _ : st) mot::cpu::round_bf16_copy(x.data(), y.data(), n);
  st.counters["GB/s"] = benchmark::Counter(8.0 * n, benchmark::Counter::kIsIterationInvariantRate,
                                           benchmark::Counter::kIs1000);
}
BENCHMARK(BM_RoundBf16)->Arg(4096 * 512)->Arg(1 << 24)->Unit(benchmark::kMicrosecond);

// dX[M,K] = dY[M,N] · W[N,K]: the input-gradient GEMM shape.
void BM_GemmNN(benchmark::State& st) {
  const int64_t M = st.range(0), N = st.range(1), K = st.range(2);
  auto a = random(M * N, 1), b = random(N * K, 2), c = random(M * K, 3);
  for (auto _ : st) mot::cpu::gemm_nn(M, K, N, a.data(), N, b.data(), K, c.data(), K, 0.0f);
  st.counters["GFLOP/s"] = benchmark::Counter(2.0 * M * N * K, benchmark::Counter::kIsIterationInvariantRate,
                                              benchmark::Counter::kIs1000);
}
BENCHMARK(BM_GemmNN)->Args({4096, 1536, 512})->Args({4096, 512, 1408})->Unit(benchmark::kMillisecond);

// dW[N,K] += dYᵀ[N,M] · X[M,K]: the weight-gradient GEMM shape.
void BM_GemmTN(benchmark::State& st) {
  const int64_t M = st.range(0), N = st.range(1), K = st.range(2);
  auto a = random(M * N, 1), b = random(M * K, 2), c = random(N * K, 3);
  for (auto _ : st) mot::cpu::gemm_tn(N, K, M, a.data(), N, b.data(), K, c.data(), K, 1.0f);
  st.counters["GFLOP/s"] = benchmark::Counter(2.0 * M * N * K, benchmark::Counter::kIsIterationInvariantRate,
                                              benchmark::Counter::kIs1000);
}
BENCHMARK(BM_GemmTN)->Args({4096, 1536, 512})->Args({4096, 512, 1408})->Unit(benchmark::kMillisecond);

// Causal attention over B rows of T positions, H heads of hd; FLOPs counted for the
// causal half (4·T²/2·hd per head forward, 2.5x that backward).
void attention_args(benchmark::internal::Benchmark* b) {
  b->Args({8, 8, 512, 64})->Args({4, 8, 1024, 64})->Args({8, 4, 512, 24})->Unit(benchmark::kMillisecond);
}

struct AttnData {
  mot::cpu::AttnShape s;
  std::vector<float> q, k, v, o, lse, dout, dq, dk, dv;
  std::vector<int32_t> len, lo, hi;
  mot::cpu::KeyRanges r{};
  explicit AttnData(const benchmark::State& st) {
    s = {st.range(0), st.range(1), st.range(2), st.range(2), st.range(3)};
    const size_t n = s.B * s.H * s.Tq * s.hd;
    q = random(n, 1), k = random(n, 2), v = random(n, 3), o.resize(n), lse.resize(s.B * s.H * s.Tq);
    dout = random(n, 4), dq.resize(n), dk.resize(n), dv.resize(n);
    len.assign(s.B, static_cast<int32_t>(s.Tq));
    lo.assign(s.B * s.Tq, 0);
    hi.resize(s.B * s.Tq);
    for (size_t i = 0; i < hi.size(); ++i) hi[i] = static_cast<int32_t>(i % s.Tq + 1);  // causal
    r = {len.data(), len.data(), lo.data(), hi.data()};
  }
  double flops() const { return 4.0 * s.B * s.H * s.hd * s.Tq * (s.Tq + 1) / 2.0; }
};

void BM_AttentionForward(benchmark::State& st) {
  AttnData d(st);
  for (auto _ : st)
    mot::cpu::attention_forward(d.s, d.q.data(), d.k.data(), d.v.data(), d.r, d.o.data(), d.lse.data());
  st.counters["GFLOP/s"] =
      benchmark::Counter(d.flops(), benchmark::Counter::kIsIterationInvariantRate, benchmark::Counter::kIs1000);
}
BENCHMARK(BM_AttentionForward)->Apply(attention_args);

void BM_AttentionBackward(benchmark::State& st) {
  AttnData d(st);
  mot::cpu::attention_forward(d.s, d.q.data(), d.k.data(), d.v.data(), d.r, d.o.data(), d.lse.data());
  for (auto _ : st)
    mot::cpu::attention_backward(d.s, d.q.data(), d.k.data(), d.v.data(), d.o.data(), d.lse.data(), d.dout.data(),
                                 d.r, d.dq.data(), d.dk.data(), d.dv.data());
  st.counters["GFLOP/s"] = benchmark::Counter(2.5 * d.flops(), benchmark::Counter::kIsIterationInvariantRate,
                                              benchmark::Counter::kIs1000);
}
BENCHMARK(BM_AttentionBackward)->Apply(attention_args);

void BM_RmsNormForward(benchmark::State& st) {
  const int64_t n = st.range(0), d = st.range(1);
  auto x = random(n * d, 1), w = random(d, 2), y = random(n * d, 3), r = random(n, 4);
  for (auto _ : st) mot::cpu::rmsnorm_forward(x.data(), w.data(), y.data(), r.data(), n, d, 1e-5f);
  st.counters["GB/s"] = benchmark::Counter(8.0 * n * d, benchmark::Counter::kIsIterationInvariantRate,
                                           benchmark::Counter::kIs1000);
}
BENCHMARK(BM_RmsNormForward)->Args({4096, 512})->Unit(benchmark::kMicrosecond);

void BM_RmsNormBackward(benchmark::State& st) {
  const int64_t n = st.range(0), d = st.range(1);
  auto x = random(n * d, 1), w = random(d, 2), dy = random(n * d, 3), r = random(n, 4), dx = random(n * d, 5);
  std::vector<float> dw(d), scratch(mot::cpu::kReduceChunks * d);
  for (auto _ : st)
    mot::cpu::rmsnorm_backward(x.data(), w.data(), r.data(), dy.data(), dx.data(), dw.data(), n, d, true,
                               scratch.data());
  st.counters["GB/s"] = benchmark::Counter(16.0 * n * d, benchmark::Counter::kIsIterationInvariantRate,
                                           benchmark::Counter::kIs1000);
}
BENCHMARK(BM_RmsNormBackward)->Args({4096, 512})->Unit(benchmark::kMicrosecond);

void BM_SwiGLU(benchmark::State& st) {
  const int64_t n = st.range(0), F = st.range(1);
  auto ac = random(n * 2 * F, 1), g = random(n * F, 2), dg = random(n * F, 3), dac = random(n * 2 * F, 4);
  for (auto _ : st) {
    mot::cpu::swiglu_forward(ac.data(), g.data(), n, F);
    mot::cpu::swiglu_backward(ac.data(), dg.data(), dac.data(), n, F);
  }
  st.counters["GB/s"] = benchmark::Counter(4.0 * n * F * 7, benchmark::Counter::kIsIterationInvariantRate,
                                           benchmark::Counter::kIs1000);
}
BENCHMARK(BM_SwiGLU)->Args({4096, 1408})->Unit(benchmark::kMicrosecond);

void BM_AdamW(benchmark::State& st) {
  const int64_t n = st.range(0);
  auto p = random(n, 1), g = random(n, 2), m = random(n, 3), v = random(n, 4);
  for (auto& x : v) x = x * x;
  mot::cpu::AdamWStep s{1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, 0.5f, 0.5f, 0.1f, 0.05f};
  for (auto _ : st) mot::cpu::adamw(p.data(), g.data(), m.data(), v.data(), n, s);
  st.counters["GB/s"] = benchmark::Counter(28.0 * n, benchmark::Counter::kIsIterationInvariantRate,
                                           benchmark::Counter::kIs1000);
}
BENCHMARK(BM_AdamW)->Arg(1 << 24)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
