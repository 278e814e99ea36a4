// Batch-invariant linear layer for generation: y[m][n] = Σ_k x[m][k] w[n][k] with every
// output summed in one fixed order (16 interleaved partial sums over k, then a fixed
// reduction) whatever M, N and the thread split are, so a row's outputs depend on that
// row alone. The KV-cache decoder (one row per sequence) and the uncached one (whole
// prefixes) then compute bit-identical logits, and a sequence's tokens do not depend on
// the batch it is decoded in. One pass over the weights per 4 rows: at batch 1 it reads
// each weight once (OpenBLAS packs them first), so decoding runs at memory bandwidth;
// bf16 weights (their top 16 bits) halve that traffic.
#pragma once
#include <cstdint>

namespace mot::cpu {

// x: [M, K] with row stride ldx; w: [N, K] compact (nn.Linear's layout); y: [M, N] with row stride ldy.
void linear_rowexact(int64_t M, int64_t N, int64_t K, const float* x, int64_t ldx, const float* w, float* y,
                     int64_t ldy);
// The same with w as bf16 bit patterns (x already rounded to bf16 values by the caller
// for bf16 numerics, or not).
void linear_rowexact(int64_t M, int64_t N, int64_t K, const float* x, int64_t ldx, const uint16_t* w, float* y,
                     int64_t ldy);

}  // namespace mot::cpu
