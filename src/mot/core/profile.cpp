#include "mot/core/profile.hpp"

namespace mot::prof {

const char* slot_name(Slot s) {
  switch (s) {
    case GemmForward: return "gemm_forward";
    case GemmInputGrad: return "gemm_input_grad";
    case GemmWeightGrad: return "gemm_weight_grad";
    case RoundBf16: return "round_bf16";
    case AttentionForward: return "attention_forward";
    case AttentionBackward: return "attention_backward";
    case Norm: return "rmsnorm";
    case SwiGLU: return "swiglu";
    case LossSoftmax: return "loss_softmax";
    case Optimizer: return "optimizer";
    case kSlots: break;
  }
  return "?";
}

}  // namespace mot::prof
