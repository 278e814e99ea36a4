// Attention sublayer. Projections run per weight copy on contiguous sorted rows; the
// attention itself runs in sequence order over all positions of every modality:
//   qkv = x · [Wq; Wk; Wv]ᵀ           (one GEMM per copy)
//   q, k <- RoPE(QKNorm(q, k))        (per position, written to [B, H, T, hd])
//   O = softmax(q kᵀ/sqrt(hd) + mask) v   (mask: each position's key range, Batch)
//   out = concat_heads(O) · Woᵀ       (one GEMM per copy)
#include "mot/model/model.hpp"

namespace mot {

HeadLayout Model::head_layout() const {
  HeadLayout lay;
  lay.Tq = rt_.T;
  lay.Tk = rt_.Tk;
  lay.H = cfg_.n_heads;
  lay.hd = cfg_.head_dim();
  lay.q_slot = rt_.tables.perm;
  lay.kv_slot = rt_.tables.key_slot;
  lay.pos = rt_.tables.pos;
  lay.rope_cos = ws_.rope_cos;
  lay.rope_sin = ws_.rope_sin;
  return lay;
}

void Model::attention_forward(int l, ConstMat in, Mat out) {
  const LayerActs& a = acts_[l];
  const LayerOffsets& w = table_.layers[l];
  const HeadLayout lay = head_layout();
  const auto& groups = rt_.groups[static_cast<int>(Component::Attention)];
  // Keys and values: this layer's own, or the KV cache's (which also holds earlier positions).
  float* K = cache_ ? cache_->k[l] : a.K;
  float* V = cache_ ? cache_->v[l] : a.V;
  for (const RowGroup& g : groups)
    be_->linear_forward(in.slice(g.begin, g.end), wmat_ + w.wqkv[g.copy], a.qkv.slice(g.begin, g.end));
  // To heads: QK-norm (weights of the position's own modality), RoPE, scatter.
  for (const RowGroup& g : groups) {
    QkNorm qk;
    if (cfg_.qk_norm) qk = {params_ + w.q_norm[g.copy], params_ + w.k_norm[g.copy], float(cfg_.norm_eps), a.qk_rstd};
    be_->heads_forward(lay, g.begin, g.end, a.qkv, qk, a.Q, K, V);
  }
  const AttnShape shape{rt_.B, lay.H, rt_.T, rt_.Tk, lay.hd};
  be_->attention_forward(shape, a.Q, K, V, rt_.tables.keys, a.O, a.lse);
  // Back to sorted rows, heads concatenated.
  be_->heads_to_rows(lay, a.O, a.cat.slice(0, rt_.N));
  for (const RowGroup& g : groups)
    be_->linear_forward(a.cat.slice(g.begin, g.end), wmat_ + w.wo[g.copy], out.slice(g.begin, g.end));
}

void Model::attention_backward(int l, ConstMat in, ConstMat dout, Mat din, bool accumulate) {
  const LayerActs& a = acts_[l];
  const LayerOffsets& w = table_.layers[l];
  const HeadLayout lay = head_layout();
  const auto& groups = rt_.groups[static_cast<int>(Component::Attention)];
  const Mat dcat = ws_.d_cat;
  for (const RowGroup& g : groups) {
    const ConstMat dy = dout.slice(g.begin, g.end);
    be_->linear_backward_input(dy, wmat_ + w.wo[g.copy], dcat.slice(g.begin, g.end), false);
    be_->linear_backward_weight(dy, a.cat.slice(g.begin, g.end), grads_ + w.wo[g.copy]);
  }
  be_->rows_to_heads(lay, dcat.slice(0, rt_.N), ws_.dO);
  const AttnShape shape{rt_.B, lay.H, rt_.T, rt_.T, lay.hd};
  be_->attention_backward(shape, a.Q, a.K, a.V, a.O, a.lse, ws_.dO, rt_.tables.keys, ws_.dQ, ws_.dK, ws_.dV);
  // From heads back to qkv rows: undo RoPE, then QK-norm backward.
  for (const RowGroup& g : groups) {
    QkNorm qk;
    float* dqw = nullptr, *dkw = nullptr;
    if (cfg_.qk_norm) {
      qk = {params_ + w.q_norm[g.copy], params_ + w.k_norm[g.copy], float(cfg_.norm_eps), a.qk_rstd};
      dqw = grads_ + w.q_norm[g.copy];
      dkw = grads_ + w.k_norm[g.copy];
    }
    be_->heads_backward(lay, g.begin, g.end, a.qkv, qk, ws_.dQ, ws_.dK, ws_.dV, ws_.d_qkv, dqw, dkw);
  }
  for (const RowGroup& g : groups) {
    const ConstMat dqkv = ws_.d_qkv.slice(g.begin, g.end);
    be_->linear_backward_input(dqkv, wmat_ + w.wqkv[g.copy], din.slice(g.begin, g.end), accumulate);
    be_->linear_backward_weight(dqkv, in.slice(g.begin, g.end), grads_ + w.wqkv[g.copy]);
  }
}

}  // namespace mot
