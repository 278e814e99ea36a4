#include "mot/generate/sampling.hpp"

#include <algorithm>
#include <cmath>

#include "mot/core/error.hpp"

namespace mot {

void validate_sampling(const SamplingOptions& o) {
  if (!std::isfinite(o.temperature) || o.temperature < 0)
    fail("--temperature ", o.temperature, ": must be a finite number >= 0 (0 is greedy)");
  if (o.top_k < 0) fail("--top-k ", o.top_k, ": must be >= 0 (0 keeps every token)");
  if (!(o.top_p > 0 && o.top_p <= 1)) fail("--top-p ", o.top_p, ": must be in (0, 1]");
}

TokenSampler::TokenSampler(int64_t vocab) : vocab_(vocab) {
  cand_.reserve(static_cast<size_t>(vocab));
  prob_.reserve(static_cast<size_t>(vocab));
}

int32_t TokenSampler::sample(const float* logits, const std::vector<TokenRange>& allowed, const SamplingOptions& o,
                             Rng& rng) {
  cand_.clear();
  const auto take = [&](int64_t b, int64_t e) {
    for (int64_t id = std::max<int64_t>(b, 0); id < std::min(e, vocab_); ++id) {
      if (!std::isfinite(logits[id])) fail("logit of token ", id, " is not finite (", logits[id], ")");
      cand_.emplace_back(logits[id], static_cast<int32_t>(id));
    }
  };
  if (allowed.empty()) take(0, vocab_);
  for (const TokenRange& r : allowed) take(r.begin, r.end);
  if (cand_.empty()) fail("no token of the vocabulary [0, ", vocab_, ") is allowed here");
  // Most likely first; equal logits: the lower id first (so greedy ties go to it).
  const auto before = [](const std::pair<float, int32_t>& a, const std::pair<float, int32_t>& b) {
    return a.first > b.first || (a.first == b.first && a.second < b.second);
  };
  if (o.temperature == 0.0 || o.top_k == 1) return std::min_element(cand_.begin(), cand_.end(), before)->second;
  std::sort(cand_.begin(), cand_.end(), before);
  size_t n = cand_.size();
  if (o.top_k > 0) n = std::min(n, static_cast<size_t>(o.top_k));
  // Probabilities in double: softmax of logit / temperature over the kept tokens.
  prob_.resize(n);
  double total = 0.0;
  for (size_t i = 0; i < n; ++i) total += prob_[i] = std::exp((cand_[i].first - cand_[0].first) / o.temperature);
  if (o.top_p < 1.0) {  // the shortest prefix whose share reaches top_p (at least one token)
    double mass = 0.0;
    size_t keep = 0;
    while (keep < n && mass < o.top_p * total) mass += prob_[keep++];
    n = keep;
    total = mass;
  }
  double u = rng.uniform() * total;
  for (size_t i = 0; i + 1 < n; ++i) {
    if (u < prob_[i]) return cand_[i].second;
    u -= prob_[i];
  }
  return cand_[n - 1].second;
}

}  // namespace mot
