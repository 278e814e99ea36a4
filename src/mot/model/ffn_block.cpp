// Feed-forward sublayer, per row group of its weight copy. A SwiGLU copy runs one GEMM
// pair on its contiguous rows:
//   ac = x · [W1; W3]ᵀ,  g = silu(a) ⊙ c,  out = g · W2ᵀ
// A mixture-of-experts copy (arch = "moe", or a hybrid's moe_modalities) is in
// moe_block.cpp.
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

void Model::ffn_forward(int l, ConstMat in, Mat out) {
  for (const RowGroup& g : rt_.groups[static_cast<int>(Component::Ffn)]) {
    if (const MoeGroup* m = moe_group_of(rt_, g)) moe_forward(l, *m, in, out);
    else swiglu_group_forward(l, g, in, out);
  }
}

// din (=, or += if accumulate) d/d(in); weight gradients accumulate into grads_.
void Model::ffn_backward(int l, ConstMat in, ConstMat dout, Mat din, bool accumulate) {
  for (const RowGroup& g : rt_.groups[static_cast<int>(Component::Ffn)]) {
    if (const MoeGroup* m = moe_group_of(rt_, g)) moe_backward(l, *m, in, dout, din, accumulate);
    else swiglu_group_backward(l, g, in, dout, din, accumulate);
  }
}

void Model::swiglu_group_forward(int l, const RowGroup& g, ConstMat in, Mat out) {
  const LayerOffsets& w = table_.layers[l];
  const Mat ac = acts_[l].ac.slice(g.begin, g.end);
  const Mat gl = ws_.swiglu.slice(g.begin, g.end);
  be_->linear_forward(in.slice(g.begin, g.end), wmat_ + w.w13[g.copy], ac);
  be_->swiglu_forward(ac, gl);
  be_->linear_forward(gl, wmat_ + w.w2[g.copy], out.slice(g.begin, g.end));
}

void Model::swiglu_group_backward(int l, const RowGroup& g, ConstMat in, ConstMat dout, Mat din, bool accumulate) {
  const LayerOffsets& w = table_.layers[l];
  const ConstMat ac = acts_[l].ac.slice(g.begin, g.end);
  const ConstMat dy = dout.slice(g.begin, g.end);
  const Mat gl = ws_.swiglu.slice(g.begin, g.end);
  const Mat dg = ws_.d_swiglu.slice(g.begin, g.end);
  const Mat dac = ws_.d_ac.slice(g.begin, g.end);
  be_->swiglu_forward(ac, gl);  // recompute g rather than keep it per layer
  be_->linear_backward_input(dy, wmat_ + w.w2[g.copy], dg, false);
  be_->linear_backward_weight(dy, gl, grads_ + w.w2[g.copy]);
  be_->swiglu_backward(ac, dg, dac);
  be_->linear_backward_input(dac, wmat_ + w.w13[g.copy], din.slice(g.begin, g.end), accumulate);
  be_->linear_backward_weight(dac, in.slice(g.begin, g.end), grads_ + w.w13[g.copy]);
}

}  // namespace mot
