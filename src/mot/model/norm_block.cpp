// RMSNorm over row groups: each contiguous group of sorted rows uses the norm weight
// copy of its modality (or the single tied copy).
#include "mot/backend/cpu/kernels.hpp"
#include "mot/model/model.hpp"

namespace mot {

void Model::norm_forward(const std::vector<size_t>& w, const float* x, float* y, float* rstd, int64_t d) {
  for (const RowGroup& g : rt_.groups[static_cast<int>(Component::Norm)])
    cpu::rmsnorm_forward(x + g.begin * d, params_ + w[g.copy], y + g.begin * d, rstd + g.begin, g.end - g.begin, d,
                         static_cast<float>(cfg_.norm_eps));
}

void Model::norm_apply(const std::vector<size_t>& w, const float* x, const float* rstd, float* y, int64_t d) {
  for (const RowGroup& g : rt_.groups[static_cast<int>(Component::Norm)])
    cpu::rmsnorm_apply(x + g.begin * d, params_ + w[g.copy], rstd + g.begin, y + g.begin * d, g.end - g.begin, d);
}

void Model::norm_backward(const std::vector<size_t>& w, const float* x, const float* rstd, const float* dy,
                          float* dx, bool accumulate, int64_t d) {
  for (const RowGroup& g : rt_.groups[static_cast<int>(Component::Norm)])
    cpu::rmsnorm_backward(x + g.begin * d, params_ + w[g.copy], rstd + g.begin, dy + g.begin * d, dx + g.begin * d,
                          grads_ + w[g.copy], g.end - g.begin, d, accumulate, ws_.reduce);
}

}  // namespace mot
