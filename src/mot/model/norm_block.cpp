// RMSNorm over row groups: each contiguous group of sorted rows uses the norm weight
// copy of its modality (or the single tied copy).
#include "mot/model/model.hpp"

namespace mot {

void Model::norm_forward(const std::vector<size_t>& w, ConstMat x, Mat y, float* rstd) {
  for (const RowGroup& g : rt_.groups[static_cast<int>(Component::Norm)])
    be_->rmsnorm_forward(x.slice(g.begin, g.end), params_ + w[g.copy], static_cast<float>(cfg_.norm_eps),
                         y.slice(g.begin, g.end), rstd + g.begin);
}

void Model::norm_apply(const std::vector<size_t>& w, ConstMat x, const float* rstd, Mat y) {
  for (const RowGroup& g : rt_.groups[static_cast<int>(Component::Norm)])
    be_->rmsnorm_apply(x.slice(g.begin, g.end), params_ + w[g.copy], rstd + g.begin, y.slice(g.begin, g.end));
}

void Model::norm_backward(const std::vector<size_t>& w, ConstMat x, const float* rstd, ConstMat dy, Mat dx,
                          bool accumulate) {
  for (const RowGroup& g : rt_.groups[static_cast<int>(Component::Norm)])
    be_->rmsnorm_backward(x.slice(g.begin, g.end), params_ + w[g.copy], rstd + g.begin, dy.slice(g.begin, g.end),
                          dx.slice(g.begin, g.end), accumulate, grads_ + w[g.copy]);
}

}  // namespace mot
