#include "mot/generate/generator.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "mot/core/error.hpp"
#include "mot/core/rng.hpp"

namespace mot {

int64_t default_max_tokens(const TokenGrammar& g, GenTarget t) {
  switch (t) {
    case GenTarget::image: return g.tokens_per_image + 1;
    case GenTarget::speech: return 500;
    case GenTarget::text: return 128;
  }
  return 128;
}

namespace {

// One row of the batch being decoded.
struct RowState {
  std::vector<int32_t> seq;  // the whole context: prompt, opener, generated tokens
  TokenGrammar::State state;
  GenTarget target = GenTarget::text;
  int64_t generated = 0;  // tokens after the prompt and opener
  int64_t budget = 0;     // at most this many
  bool done = false;
};

// Every row's positions into `b`: all of them (the prefill, or an uncached step), or
// with last_only just the last one, after the row's earlier keys in the cache.
void fill_batch(const ModelConfig& c, const std::vector<RowState>& rows, bool last_only, Batch& b) {
  const int64_t R = static_cast<int64_t>(rows.size());
  int64_t len = 1;
  if (!last_only)
    for (const auto& r : rows) len = std::max<int64_t>(len, static_cast<int64_t>(r.seq.size()));
  b.resize(R, len);
  if (last_only) b.past.assign(static_cast<size_t>(R), 0);
  for (int64_t r = 0; r < R; ++r) {
    const auto& s = rows[r].seq;
    const int64_t n = static_cast<int64_t>(s.size());
    const int64_t from = last_only ? n - 1 : 0;
    if (last_only) b.past[r] = static_cast<int32_t>(from);
    b.row_len[r] = static_cast<int32_t>(n - from);
    int32_t doc = 0;  // the document of each position starts at its row's last <bos> at or before it
    for (int64_t t = 0; t < n; ++t) {
      if (c.doc_mask && s[t] == c.bos_id) doc = static_cast<int32_t>(t);
      if (t < from) continue;
      const int64_t i = b.at(r, t - from);
      b.modality[i] = c.modality_of_token(s[t]);
      b.token[i] = s[t];
      b.pos[i] = static_cast<int32_t>(t);
      b.kv_lo[i] = c.doc_mask ? doc : 0;
      b.kv_hi[i] = static_cast<int32_t>(t + 1);
    }
  }
}

uint64_t row_seed(uint64_t seed, int64_t row) {
  return seed * 0x9e3779b97f4a7c15ull + static_cast<uint64_t>(row) * 0xd1b54a32d192ed03ull + 0x632be59bd9b4e019ull;
}

}  // namespace

std::vector<Generation> generate(const ModelConfig& cfg, const float* params, const std::vector<float>& moe_thresholds,
                                 const TokenGrammar& g, const std::vector<GenerationRequest>& requests,
                                 const GenerationOptions& opt) {
  validate_sampling(opt.sampling);
  if (requests.empty()) fail("generate: no prompts");
  if (opt.max_tokens < 0) fail("--max-tokens ", opt.max_tokens, ": must be >= 1");
  if (!std::isfinite(opt.cfg) || opt.cfg < 0) fail("--cfg ", opt.cfg, ": must be a finite number >= 0 (0: no guidance)");
  const bool guided = opt.cfg > 0;
  const int64_t R0 = static_cast<int64_t>(requests.size()), R = guided ? 2 * R0 : R0;

  std::vector<RowState> rows(static_cast<size_t>(R));
  std::vector<Generation> out(static_cast<size_t>(R0));
  int64_t max_new = 0;
  for (int64_t r = 0; r < R0; ++r) {
    const GenerationRequest& q = requests[r];
    if (q.prompt.empty() || q.prompt[0] != g.bos) fail("prompt ", r + 1, " does not start with <bos> (id ", g.bos, ")");
    for (int32_t t : q.prompt)
      if (t < 0 || t >= cfg.vocab_size) fail("prompt ", r + 1, ": token id ", t, " is outside the vocabulary");
    if (guided && q.target != GenTarget::image) fail("--cfg applies to image generation (--modality image)");
    RowState& s = rows[r];
    s.seq = q.prompt;
    s.target = q.target;
    try {
      s.state = g.read(q.prompt);
    } catch (const Error& e) {
      fail("prompt ", r + 1, " is not a well-formed document start: ", e.what());
    }
    if (s.state.span != TokenGrammar::Span::text) fail("prompt ", r + 1, " ends inside an image or speech span");
    if (const auto open = g.opener(q.target)) {
      s.seq.push_back(*open);
      g.advance(s.state, *open);
      out[r].tokens.push_back(*open);
    }
    const int64_t budget = opt.max_tokens > 0 ? opt.max_tokens : default_max_tokens(g, q.target);
    if (q.target == GenTarget::image && budget < g.tokens_per_image + 1)
      fail("--max-tokens ", budget, " is fewer than an image's ", g.tokens_per_image, " codes + <eoi>");
    s.budget = budget;
    max_new = std::max(max_new, budget);
    if (guided) {  // the unconditional twin: <bos><boi>
      RowState& u = rows[R0 + r];
      u.seq = {g.bos, g.boi};
      u.target = GenTarget::image;
      u.state = g.read(u.seq);
    }
  }
  int64_t longest = 0;
  for (const auto& s : rows) longest = std::max<int64_t>(longest, static_cast<int64_t>(s.seq.size()));
  const int64_t capacity = longest + max_new;
  if (capacity > cfg.max_seq_len)
    fail("a prompt of ", longest, " tokens + ", max_new, " new ones exceeds the model's max_seq_len ", cfg.max_seq_len,
         " (shorten the prompt or lower --max-tokens)");

  Model model(cfg, R, capacity + 1, false, opt.precision);
  std::memcpy(model.params(), params, sizeof(float) * model.table().total);
  model.set_batch_invariant(true);  // cached and uncached decoding: the same logits, bit for bit
  if (cfg.has_moe()) {
    model.set_moe_thresholds(moe_thresholds);
    model.use_threshold_routing(true);
  }
  // The cache in host memory: the CPU backend's views are host memory (a device backend
  // allocates it beside its arena).
  const int64_t H = cfg.n_heads, hd = cfg.head_dim(), V = cfg.vocab_size;
  std::vector<std::vector<float>> kv;
  KvCache cache;
  if (opt.kv_cache) {
    cache.rows = R;
    cache.capacity = capacity;
    kv.assign(static_cast<size_t>(2 * cfg.n_layers), std::vector<float>(static_cast<size_t>(R * H * capacity * hd)));
    for (int64_t l = 0; l < cfg.n_layers; ++l) {
      cache.k.push_back(kv[2 * l].data());
      cache.v.push_back(kv[2 * l + 1].data());
    }
    model.attach_kv_cache(&cache);
  }

  std::vector<Rng> rng;
  for (int64_t r = 0; r < R0; ++r) rng.emplace_back(row_seed(opt.seed, r));
  TokenSampler sampler(V);
  std::vector<float> logits(static_cast<size_t>(R * V)), guided_row(static_cast<size_t>(V));
  Batch b;
  b.reserve(R, capacity);
  fill_batch(cfg, rows, false, b);  // the prefill (or, uncached, the first full pass)
  model.last_logits(b, logits.data());
  for (;;) {
    for (int64_t r = 0; r < R0; ++r) {
      RowState& s = rows[r];
      if (s.done) continue;
      int32_t tok;
      if (const auto f = g.forced(s.state)) {
        tok = *f;
      } else {
        const float* z = logits.data() + r * V;
        if (guided && s.state.span == TokenGrammar::Span::image) {
          const float* zu = logits.data() + (R0 + r) * V;
          const float w = static_cast<float>(opt.cfg);
          for (int64_t i = 0; i < V; ++i) guided_row[i] = zu[i] + w * (z[i] - zu[i]);
          z = guided_row.data();
        }
        tok = sampler.sample(z, g.allowed(s.state), opt.sampling, rng[r]);
      }
      const bool ends = g.ends(s.target, s.state, tok);
      g.advance(s.state, tok);
      s.seq.push_back(tok);
      out[r].tokens.push_back(tok);
      ++s.generated;
      if (ends) out[r].finished = true;
      s.done = ends || s.generated >= s.budget;
      if (guided) {  // the twin follows the row's image
        RowState& u = rows[R0 + r];
        g.advance(u.state, tok);
        u.seq.push_back(tok);
        u.done = s.done;
      }
    }
    bool all = true;
    for (int64_t r = 0; r < R0; ++r) all = all && rows[r].done;
    if (all) break;
    fill_batch(cfg, rows, opt.kv_cache, b);
    model.last_logits(b, logits.data());
  }
  return out;
}

}  // namespace mot
