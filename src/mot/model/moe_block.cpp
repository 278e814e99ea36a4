// Mixture-of-experts feed-forward with expert choice (Zhou et al. 2022; SPEC section 2),
// on one MoE row group (build_routing's MoeGroup):
//   prob = softmax over experts of x · Rᵀ                        (router R: [E, d])
//   in each pool (one batch row's positions in the group), expert e picks the
//   k = floor(n / E) positions with the highest prob[., e]; equal scores go to the
//   earlier position
//   out[s] = Σ over experts e that picked s of prob[s, e] · SwiGLU_e(x[s])   (0 if none)
//
// Each expert's picks are gathered into contiguous rows (expert after expert, k rows
// each, inside the group's own rows of every per-row buffer: E k <= group size), so an
// expert is one GEMM pair like a dense SwiGLU copy. `slot` maps (row, expert) back to
// the pick, so combining the experts' outputs is one pass over the group's rows that
// adds them in expert order (deterministic, no atomics).
//
// Backward: expert weights, d(x) through the experts, and d(prob) -> softmax -> router
// weights and d(x) through the router. No gradient flows through the choice itself
// (it is piecewise constant).
//
// Ties are broken by position only among bit-equal scores. Scores that are equal in
// exact arithmetic can differ in the last bit in fp32 (the GEMMs round equal rows at
// different positions differently), e.g. the first token of every document under
// doc_mask, which attends only to itself; then rounding decides between them.
#include <algorithm>
#include <vector>

#include "mot/model/model.hpp"

namespace mot {

namespace {
ExpertChoice choice_of(const MoeGroup& g, const Routing& rt, int64_t experts) {
  ExpertChoice c;
  c.experts = experts;
  c.pools = rt.tables.pools;
  c.pool0 = g.pool0;
  c.pool1 = g.pool1;
  c.members = rt.tables.pool_rows;
  c.k_total = g.k;
  c.rows = rt.N;
  return c;
}
}  // namespace

void Model::moe_forward(int l, const MoeGroup& g, ConstMat in, Mat out) {
  const ExpertOffsets& w = table_.layers[l].experts[g.copy];
  const LayerActs& a = acts_[l];
  const int64_t E = cfg_.n_experts, k = g.k;
  // Router scores for every position of the group.
  const Mat prob = a.moe_prob.slice(g.begin, g.end);
  be_->linear_forward(in.slice(g.begin, g.end), wmat_ + w.router, prob);
  be_->softmax_rows(prob);
  if (threshold_routing_) return moe_threshold_forward(l, g, in, out);
  // Expert choice, then each expert's SwiGLU on its gathered picks.
  int32_t* pick = a.moe_pick + g.begin;  // indices into the group's rows of X, Y, ac, g
  be_->expert_choice(choice_of(g, rt_, E), a.moe_prob, pick, a.moe_slot);
  // The group's rows of each buffer; expert e's picks are rows [e k, (e + 1) k).
  const Mat X = ws_.moe_x.slice(g.begin, g.end), Y = ws_.moe_y.slice(g.begin, g.end);
  const Mat ac = a.ac.slice(g.begin, g.end), gl = ws_.swiglu.slice(g.begin, g.end);
  be_->gather_rows(in, pick, X.slice(0, E * k));
  for (int64_t e = 0; e < E; ++e)
    be_->linear_forward(X.slice(e * k, (e + 1) * k), wmat_ + w.w13[e], ac.slice(e * k, (e + 1) * k));
  be_->swiglu_forward(ac.slice(0, E * k), gl.slice(0, E * k));
  for (int64_t e = 0; e < E; ++e)
    be_->linear_forward(gl.slice(e * k, (e + 1) * k), wmat_ + w.w2[e], Y.slice(e * k, (e + 1) * k));
  // Combine, experts in a fixed order; positions no expert picked get 0.
  be_->expert_combine(g.begin, g.end, a.moe_prob, a.moe_slot, Y, out);
  if (calibration_) calibrate_group(l, g);
}

// Generation: each position goes to the experts whose score reaches that expert's
// calibrated threshold, independently of the other positions (expert choice compares
// a position with later ones, which a decoder has not seen). One expert at a time, so
// its picks (at most the group's rows) fit the group's rows of every buffer.
void Model::moe_threshold_forward(int l, const MoeGroup& g, ConstMat in, Mat out) {
  const ExpertOffsets& w = table_.layers[l].experts[g.copy];
  const LayerActs& a = acts_[l];
  const int64_t E = cfg_.n_experts;
  const float* thr = moe_thresholds_.data() + threshold_index(l, g.copy);
  int32_t* pick = a.moe_pick + g.begin;
  if (measure_agreement_) {  // expert choice on the same rows, for comparison only
    be_->expert_choice(choice_of(g, rt_, E), a.moe_prob, pick, a.moe_slot);
    const int64_t n = g.end - g.begin;
    std::vector<float> prob(static_cast<size_t>(n * E));
    std::vector<int32_t> slot(static_cast<size_t>(n * E));
    be_->download(a.moe_prob.row(g.begin), prob.data(), sizeof(float) * prob.size());
    be_->download(a.moe_slot + g.begin * E, slot.data(), sizeof(int32_t) * slot.size());
    for (int64_t i = 0; i < n * E; ++i) {
      const bool chosen = slot[i] >= 0, over = prob[i] >= thr[i % E];
      agreement_.decisions++;
      agreement_.agree += chosen == over;
      agreement_.choice_picks += chosen;
      agreement_.threshold_picks += over;
    }
  }
  const Mat X = ws_.moe_x.slice(g.begin, g.end), Y = ws_.moe_y.slice(g.begin, g.end);
  const Mat ac = a.ac.slice(g.begin, g.end), gl = ws_.swiglu.slice(g.begin, g.end);
  for (int64_t e = 0; e < E; ++e) {
    const int64_t n = be_->expert_threshold_pick(g.begin, g.end, a.moe_prob, e, thr[e], pick);
    if (n > 0) {
      be_->gather_rows(in, pick, X.slice(0, n));
      be_->linear_forward(X.slice(0, n), wmat_ + w.w13[e], ac.slice(0, n));
      be_->swiglu_forward(ac.slice(0, n), gl.slice(0, n));
      be_->linear_forward(gl.slice(0, n), wmat_ + w.w2[e], Y.slice(0, n));
    }
    be_->expert_accumulate(g.begin, g.end, a.moe_prob, e, pick, n, Y, out, e == 0);
  }
}

// Calibration: for each pool and expert, the score of the k-th (last) position it
// picked, summed per (layer, copy, expert) with the number of pools.
void Model::calibrate_group(int l, const MoeGroup& g) {
  const LayerActs& a = acts_[l];
  const int64_t E = cfg_.n_experts, N = rt_.N;
  std::vector<float> prob(static_cast<size_t>(N * E));
  std::vector<int32_t> pick(static_cast<size_t>(N));
  be_->download(a.moe_prob.data, prob.data(), sizeof(float) * prob.size());
  be_->download(a.moe_pick, pick.data(), sizeof(int32_t) * pick.size());
  const int32_t* gp = pick.data() + g.begin;
  const size_t at = threshold_index(l, g.copy);
  for (int64_t p = g.pool0; p < g.pool1; ++p) {
    const MoePool& pool = rt_.pools[p];
    const int64_t k = pool.size / E;
    if (k < 1) continue;
    for (int64_t e = 0; e < E; ++e) {
      float lowest = 1.0f;
      for (int64_t j = 0; j < k; ++j) lowest = std::min(lowest, prob[gp[e * g.k + pool.pick0 + j] * E + e]);
      calibration_->sum[at + e] += lowest;
      calibration_->count[at + e] += 1;
    }
  }
}

// din (=, or += if accumulate) d/d(in) over the group's rows; weight gradients
// accumulate into grads_. With y_e = SwiGLU_e(x) and out = Σ_e p_e y_e:
//   d(y_e) = p_e dout,  d(p_e) = dout · y_e = g_e · (dout W2_e)  (so y_e is not kept).
void Model::moe_backward(int l, const MoeGroup& g, ConstMat in, ConstMat dout, Mat din, bool accumulate) {
  const ExpertOffsets& w = table_.layers[l].experts[g.copy];
  const LayerActs& a = acts_[l];
  const int64_t E = cfg_.n_experts, k = g.k;
  const int32_t* pick = a.moe_pick + g.begin;
  const ConstMat ac = a.ac.slice(g.begin, g.end);
  const Mat X = ws_.moe_x.slice(g.begin, g.end);
  const Mat D = ws_.moe_y.slice(g.begin, g.end);  // d(out) at the picks, later d(x) from the experts
  const Mat gl = ws_.swiglu.slice(g.begin, g.end), dg = ws_.d_swiglu.slice(g.begin, g.end);
  const Mat dac = ws_.d_ac.slice(g.begin, g.end);
  const Mat dprob = ws_.moe_dprob.slice(g.begin, g.end);
  const auto rows = [k](const auto& m, int64_t e) { return m.slice(e * k, (e + 1) * k); };
  be_->gather_rows(dout, pick, D.slice(0, E * k));
  be_->gather_rows(in, pick, X.slice(0, E * k));
  be_->swiglu_forward(ac.slice(0, E * k), gl.slice(0, E * k));  // recompute g rather than keep it per layer
  for (int64_t e = 0; e < E; ++e) be_->linear_backward_input(rows(D, e), wmat_ + w.w2[e], rows(dg, e), false);
  // d(prob) of each (row, expert), 0 where not picked; then scale the pick's rows by
  // prob to get d(y) and d(g).
  be_->expert_combine_backward(g.begin, g.end, a.moe_prob, a.moe_slot, gl, dg, D, dprob);
  for (int64_t e = 0; e < E; ++e) be_->linear_backward_weight(rows(D, e), rows(gl, e), grads_ + w.w2[e]);
  be_->swiglu_backward(ac.slice(0, E * k), dg.slice(0, E * k), dac.slice(0, E * k));
  for (int64_t e = 0; e < E; ++e) {
    be_->linear_backward_input(rows(dac, e), wmat_ + w.w13[e], rows(D, e), false);
    be_->linear_backward_weight(rows(dac, e), rows(X, e), grads_ + w.w13[e]);
  }
  // Router: prob = softmax(x Rᵀ). This writes (or adds to) every row of din.
  be_->softmax_rows_backward(a.moe_prob.slice(g.begin, g.end), dprob);
  be_->linear_backward_weight(dprob, in.slice(g.begin, g.end), grads_ + w.router);
  be_->linear_backward_input(dprob, wmat_ + w.router, din.slice(g.begin, g.end), accumulate);
  // d(x) through the experts, added in expert order.
  be_->expert_scatter_add(g.begin, g.end, a.moe_slot, E, D, din);
}

}  // namespace mot
