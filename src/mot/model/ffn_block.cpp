// SwiGLU feed-forward, one GEMM pair per weight copy on its contiguous rows:
//   ac = x · [W1; W3]ᵀ,  g = silu(a) ⊙ c,  out = g · W2ᵀ
#include "mot/backend/cpu/gemm.hpp"
#include "mot/backend/cpu/kernels.hpp"
#include "mot/model/model.hpp"

namespace mot {

void Model::ffn_forward(int l, const float* in, float* out) {
  const LayerOffsets& w = table_.layers[l];
  float* ac = acts_[l].ac;
  const int64_t d = cfg_.dim, F = cfg_.ffn_hidden;
  for (const RowGroup& g : rt_.groups[static_cast<int>(Component::Ffn)]) {
    const int64_t n = g.end - g.begin;
    cpu::gemm_nt(n, 2 * F, d, in + g.begin * d, d, params_ + w.w13[g.copy], d, ac + g.begin * 2 * F, 2 * F, 0.0f);
  }
  cpu::swiglu_forward(ac, ws_.g, rt_.N, F);
  for (const RowGroup& g : rt_.groups[static_cast<int>(Component::Ffn)]) {
    const int64_t n = g.end - g.begin;
    cpu::gemm_nt(n, d, F, ws_.g + g.begin * F, F, params_ + w.w2[g.copy], F, out + g.begin * d, d, 0.0f);
  }
}

// din (=, or += if accumulate) d/d(in); weight gradients accumulate into grads_.
void Model::ffn_backward(int l, const float* in, const float* dout, float* din, bool accumulate) {
  const LayerOffsets& w = table_.layers[l];
  const float* ac = acts_[l].ac;
  const int64_t d = cfg_.dim, F = cfg_.ffn_hidden;
  cpu::swiglu_forward(ac, ws_.g, rt_.N, F);  // recompute g rather than keep it per layer
  for (const RowGroup& g : rt_.groups[static_cast<int>(Component::Ffn)]) {
    const int64_t n = g.end - g.begin;
    const float* dy = dout + g.begin * d;
    cpu::gemm_nn(n, F, d, dy, d, params_ + w.w2[g.copy], F, ws_.dg + g.begin * F, F, 0.0f);
    cpu::gemm_tn(d, F, n, dy, d, ws_.g + g.begin * F, F, grads_ + w.w2[g.copy], F, 1.0f);
  }
  cpu::swiglu_backward(ac, ws_.dg, ws_.dac, rt_.N, F);
  for (const RowGroup& g : rt_.groups[static_cast<int>(Component::Ffn)]) {
    const int64_t n = g.end - g.begin;
    const float* dac = ws_.dac + g.begin * 2 * F;
    cpu::gemm_nn(n, d, 2 * F, dac, 2 * F, params_ + w.w13[g.copy], d, din + g.begin * d, d, accumulate ? 1.0f : 0.0f);
    cpu::gemm_tn(2 * F, d, n, dac, 2 * F, in + g.begin * d, d, grads_ + w.w13[g.copy], d, 1.0f);
  }
}

}  // namespace mot
