// TEMPORARY (removed before the branch is done): the new KeyRanges kernel against a copy
// of the previous causal + document kernel, bit for bit, for 1, 2 and 3 threads.
#include <gtest/gtest.h>
#include <omp.h>

#include <cstring>
#include <random>
#include <vector>

#include "mot/backend/cpu/attention.hpp"
#include "attention_old_kernel.inc"

namespace {

void compare(int64_t B, int64_t H, int64_t T, int64_t hd, std::vector<int32_t> len, std::vector<std::vector<int32_t>> docs,
             float qk, uint32_t seed) {
  SCOPED_TRACE(testing::Message() << "B=" << B << " H=" << H << " T=" << T << " hd=" << hd << " seed=" << seed);
  const size_t n = B * H * T * hd;
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<float> Q(n), K(n), V(n), dO(n);
  for (auto& x : Q) x = u(rng) * qk;
  for (auto& x : K) x = u(rng) * qk;
  for (auto& x : V) x = u(rng);
  for (auto& x : dO) x = u(rng);
  docs.resize(B);
  std::vector<int32_t> ds(B * T, 0), lo(B * T, 0), hi(B * T, 0);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < len[b]; ++t) {
      int32_t s0 = 0;
      for (int32_t s : docs[b]) if (s <= t) s0 = std::max(s0, s);
      ds[b * T + t] = lo[b * T + t] = s0;
      hi[b * T + t] = static_cast<int32_t>(t + 1);
    }
  const int threads = omp_get_max_threads();
  for (int th : {1, 2, 3}) {
    omp_set_num_threads(th);
    std::vector<float> O0(n, 7.f), L0(B * H * T, 7.f), O1(n, 7.f), L1(B * H * T, 7.f);
    std::vector<float> a0(n), b0(n), c0(n), a1(n), b1(n), c1(n);
    mot::cpu::old_kernel::attention_forward({B, H, T, hd}, Q.data(), K.data(), V.data(), len.data(), ds.data(), O0.data(), L0.data());
    const mot::cpu::KeyRanges kr{len.data(), len.data(), lo.data(), hi.data()};
    mot::cpu::attention_forward({B, H, T, T, hd}, Q.data(), K.data(), V.data(), kr, O1.data(), L1.data());
    mot::cpu::old_kernel::attention_backward({B, H, T, hd}, Q.data(), K.data(), V.data(), O0.data(), L0.data(), dO.data(),
                                             len.data(), ds.data(), a0.data(), b0.data(), c0.data());
    mot::cpu::attention_backward({B, H, T, T, hd}, Q.data(), K.data(), V.data(), O1.data(), L1.data(), dO.data(), kr,
                                 a1.data(), b1.data(), c1.data());
    EXPECT_EQ(std::memcmp(O0.data(), O1.data(), n * 4), 0) << th;
    EXPECT_EQ(std::memcmp(L0.data(), L1.data(), L0.size() * 4), 0) << th;
    EXPECT_EQ(std::memcmp(a0.data(), a1.data(), n * 4), 0) << th;
    EXPECT_EQ(std::memcmp(b0.data(), b1.data(), n * 4), 0) << th;
    EXPECT_EQ(std::memcmp(c0.data(), c1.data(), n * 4), 0) << th;
  }
  omp_set_num_threads(threads);
}

}  // namespace

TEST(AttentionOldKernelTemp, BitIdenticalCausalAndDocuments) {
  uint32_t seed = 1;
  for (int64_t T : {1, 5, 7, 47, 48, 49, 95, 96, 97, 150, 193, 512})
    for (int64_t hd : {8, 16, 20, 32, 64}) {
      compare(1, 2, T, hd, {static_cast<int32_t>(T)}, {}, 1.0f, seed++);
      std::vector<int32_t> d1, d2;
      for (int32_t s = 13; s < T; s += 37) d1.push_back(s);
      for (int32_t s = 1; s < T; s += 1 + (s * 7) % 50) d2.push_back(s);
      compare(3, 2, T, hd, {static_cast<int32_t>(T), static_cast<int32_t>(T * 2 / 3), static_cast<int32_t>(T)},
              {d1, d2, {static_cast<int32_t>(T / 2)}}, 2.5f, seed++);
    }
  compare(7, 2, 130, 16, {130, 0, 1, 65, 64, 63, 2}, {{50, 64, 100}, {}, {}, {1, 2, 3, 63}, {}, {10}}, 1.0f, 999);
}
