#include "mot/dist/loss_sums.hpp"

namespace mot::dist {

namespace {

void pack(const LossSums& s, double* out) {
  const size_t M = s.by_mod.size();
  out[0] = s.loss;
  out[1] = static_cast<double>(s.targets);
  out[2] = s.diffusion;
  out[3] = static_cast<double>(s.diffusion_values);
  for (size_t m = 0; m < M; ++m) {
    out[4 + m] = s.by_mod[m];
    out[4 + M + m] = static_cast<double>(s.targets_by_mod[m]);
  }
}

LossSums unpack(const double* in, int M) {
  LossSums s;
  s.reset(M);
  s.loss = in[0];
  s.targets = static_cast<int64_t>(in[1]);
  s.diffusion = in[2];
  s.diffusion_values = static_cast<int64_t>(in[3]);
  for (int m = 0; m < M; ++m) {
    s.by_mod[m] = in[4 + m];
    s.targets_by_mod[m] = static_cast<int64_t>(in[4 + M + m]);
  }
  return s;
}

}  // namespace

LossSums sum_over_ranks(World& w, const LossSums& mine) {
  const int M = static_cast<int>(mine.by_mod.size());
  const size_t width = 4 + 2 * static_cast<size_t>(M);
  std::vector<double> one(width), all(width * static_cast<size_t>(w.size()));
  pack(mine, one.data());
  w.allgather_bytes(one.data(), sizeof(double) * width, all.data(), "loss sums");
  LossSums total;
  total.reset(M);
  for (int r = 0; r < w.size(); ++r) total.add(unpack(all.data() + width * static_cast<size_t>(r), M));
  return total;
}

LossSlots::LossSlots(int modalities, size_t slots) : m_(modalities), v_(slots * (4 + 2 * static_cast<size_t>(modalities)), 0.0) {}

void LossSlots::set(size_t slot, const LossSums& s) { pack(s, v_.data() + slot * width()); }

void LossSlots::gather(World& w, const char* what) {
  if (w.parallel()) w.allreduce_sum(v_.data(), v_.size(), what);
}

LossSums LossSlots::total() const {
  LossSums t;
  t.reset(m_);
  for (size_t i = 0; i < v_.size() / width(); ++i) t.add(unpack(v_.data() + i * width(), m_));
  return t;
}

}  // namespace mot::dist
