// Tiled causal attention (FlashAttention-2 style) in fp32. Never materialises the
// T×T score matrix: each (row, head) walks query tiles, and for each query tile the
// key tiles it can see, with an online softmax. Fully masked tiles are skipped;
// backward recomputes the probabilities of each tile from the saved log-sum-exp.
//
// Layout: Q, K, V, O, dQ, dK, dV are [B, H, T, hd] contiguous; lse is [B, H, T].
// Row b has row_len[b] valid positions (a prefix). doc_start[b*T + t] is the first
// key position query t may see (0 without document masking): key s is visible from
// query t iff doc_start[t] <= s <= t.
#pragma once
#include <cstdint>

namespace mot::cpu {

struct AttnShape {
  int64_t B = 0, H = 0, T = 0, hd = 0;
};

void attention_forward(const AttnShape& s, const float* Q, const float* K, const float* V,
                       const int32_t* row_len, const int32_t* doc_start, float* O, float* lse);

// Overwrites dQ, dK, dV (positions past row_len are zeroed).
void attention_backward(const AttnShape& s, const float* Q, const float* K, const float* V,
                        const float* O, const float* lse, const float* dO, const int32_t* row_len,
                        const int32_t* doc_start, float* dQ, float* dK, float* dV);

}  // namespace mot::cpu
