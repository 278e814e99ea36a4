// Feed-forward sublayer, per row group of its weight copy. A SwiGLU copy runs one GEMM
// pair on its contiguous rows:
//   ac = x · [W1; W3]ᵀ,  g = silu(a) ⊙ c,  out = g · W2ᵀ
// A mixture-of-experts copy (arch = "moe", or a hybrid's moe_modalities) is in
// moe_block.cpp.
#include "mot/backend/cpu/kernels.hpp"
#include "mot/model/model.hpp"

namespace mot {

namespace {
// The MoE pools of a row group (build_routing made one entry per MoE ffn group).
const MoeGroup* moe_group_of(const Routing& rt, const RowGroup& g) {
  for (const MoeGroup& m : rt.moe)
    if (m.begin == g.begin) return &m;
  return nullptr;
}
}  // namespace

void Model::ffn_forward(int l, const float* in, float* out) {
  for (const RowGroup& g : rt_.groups[static_cast<int>(Component::Ffn)]) {
    if (const MoeGroup* m = moe_group_of(rt_, g)) moe_forward(l, *m, in, out);
    else swiglu_group_forward(l, g, in, out);
  }
}

// din (=, or += if accumulate) d/d(in); weight gradients accumulate into grads_.
void Model::ffn_backward(int l, const float* in, const float* dout, float* din, bool accumulate) {
  for (const RowGroup& g : rt_.groups[static_cast<int>(Component::Ffn)]) {
    if (const MoeGroup* m = moe_group_of(rt_, g)) moe_backward(l, *m, in, dout, din, accumulate);
    else swiglu_group_backward(l, g, in, dout, din, accumulate);
  }
}

void Model::swiglu_group_forward(int l, const RowGroup& g, const float* in, float* out) {
  const LayerOffsets& w = table_.layers[l];
  const int64_t d = cfg_.dim, F = cfg_.ffn_hidden, n = g.end - g.begin;
  float* ac = acts_[l].ac + g.begin * 2 * F;
  float* gl = ws_.g + g.begin * F;
  mm_.nt(n, 2 * F, d, in + g.begin * d, d, wmat_ + w.w13[g.copy], d, ac, 2 * F, 0.0f);
  cpu::swiglu_forward(ac, gl, n, F);
  mm_.nt(n, d, F, gl, F, wmat_ + w.w2[g.copy], F, out + g.begin * d, d, 0.0f);
}

void Model::swiglu_group_backward(int l, const RowGroup& g, const float* in, const float* dout, float* din,
                                  bool accumulate) {
  const LayerOffsets& w = table_.layers[l];
  const int64_t d = cfg_.dim, F = cfg_.ffn_hidden, n = g.end - g.begin;
  const float* ac = acts_[l].ac + g.begin * 2 * F;
  const float* dy = dout + g.begin * d;
  float* gl = ws_.g + g.begin * F;
  float* dg = ws_.dg + g.begin * F;
  float* dac = ws_.dac + g.begin * 2 * F;
  cpu::swiglu_forward(ac, gl, n, F);  // recompute g rather than keep it per layer
  mm_.nn(n, F, d, dy, d, wmat_ + w.w2[g.copy], F, dg, F, 0.0f);
  mm_.tn(d, F, n, dy, d, gl, F, grads_ + w.w2[g.copy], F, 1.0f);
  cpu::swiglu_backward(ac, dg, dac, n, F);
  mm_.nn(n, d, 2 * F, dac, 2 * F, wmat_ + w.w13[g.copy], d, din + g.begin * d, d, accumulate ? 1.0f : 0.0f);
  mm_.tn(2 * F, d, n, dac, 2 * F, in + g.begin * d, d, grads_ + w.w13[g.copy], d, 1.0f);
}

}  // namespace mot
