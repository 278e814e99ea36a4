// The CUDA backend: the Backend interface (backend/backend.hpp) on one NVIDIA GPU.
//
// First version, written for exactness before speed: every kernel mirrors the CPU
// backend's arithmetic (fp32 norms, softmax, losses, AdamW; GEMMs in fp32 or with
// bf16 operands and fp32 sums through cuBLAS) and is deterministic: fixed launch
// shapes, reductions in a fixed order, no atomics.
//
// Memory: the model's one arena is CUDA managed memory, so the host code that reads
// parameters, gradients and losses (initialisation, checkpoints, clipping, the loss
// sums) works unchanged; the model uploads its routing tables per batch
// (Model::upload_routing) and calls synchronize() before the host reads results.
// All kernels run on the legacy default stream, in order.
//
// Where the code is:
//   cuda_backend.cu  memory, cuBLAS linear layers, the factory
//   rows.cu          embedding, norms, residual, SwiGLU, SiLU, losses, optimizer
//   heads.cu         rows <-> heads, QK-norm and RoPE
//   attention.cu     attention under key ranges (forward, backward)
//   experts.cu       expert choice, gather and combine (mixture of experts)
//
// Not yet (issue 16): flash-attention tiles, grouped GEMMs, fused kernels, bf16
// storage of activations, streams/graphs; generation (KV caches live in host memory).
#pragma once
#include <memory>
#include <string>

#include "mot/backend/backend.hpp"

namespace mot::cuda {

// Fails (mot::Error, one line) when no GPU can be used: no driver, no device.
std::unique_ptr<Backend> make_cuda_backend(Precision precision);

// "NVIDIA H100 80GB HBM3, 79.1 GiB, sm_90, driver 13.0", or why there is no GPU.
std::string device_summary();
// Whether a CUDA GPU can be used here (tests skip without one).
bool device_available(std::string* why = nullptr);

}  // namespace mot::cuda
