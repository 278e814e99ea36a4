// Tiled masked attention (FlashAttention-2 style) in fp32. Never materialises the
// Tq×Tk score matrix: each (row, head) walks query tiles, and for each query tile the
// key tiles it can see, with an online softmax. Tiles that no query sees are skipped;
// backward recomputes the probabilities of each tile from the saved log-sum-exp.
//
// Layout: Q, O, dQ are [B, H, Tq, hd], lse is [B, H, Tq]; K, V, dK, dV are [B, H, Tk, hd],
// all contiguous. Row b has q_len[b] valid queries and k_len[b] valid keys (prefixes).
// The mask is a visible key range per query: query i of row b (i < q_len[b]) sees the
// keys [lo[b*Tq + i], hi[b*Tq + i]) of row b, 0 <= lo <= hi <= k_len[b]. Any ranges are
// allowed: causal (lo = document start, hi = i + 1), bidirectional spans (hi > i + 1, a
// query sees later keys), decode (Tq < Tk, query i at absolute position k_len - q_len + i
// with hi = that position + 1), and empty ranges (lo == hi).
#pragma once
#include <cstdint>

#include "mot/backend/backend.hpp"

namespace mot::cpu {

// The shapes and the mask are the Backend interface's (backend/backend.hpp).
using AttnShape = mot::AttnShape;
using KeyRanges = mot::KeyRanges;

// Writes O and lse for the valid queries only (i < q_len[b]); the rest are left as they
// were. A query with an empty range gets O = 0 and lse = -inf.
void attention_forward(const AttnShape& s, const float* Q, const float* K, const float* V, const KeyRanges& r,
                       float* O, float* lse);

// Gradients of the forward above, given its O and lse; any Tq, Tk and ranges (empty ones
// get zero gradients). Overwrites dQ, dK, dV (queries past q_len and keys past k_len are
// zeroed).
void attention_backward(const AttnShape& s, const float* Q, const float* K, const float* V, const float* O,
                        const float* lse, const float* dO, const KeyRanges& r, float* dQ, float* dK, float* dV);

}  // namespace mot::cpu
