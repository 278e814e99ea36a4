#include "mot/generate/diffusion_sampler.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "mot/core/error.hpp"
#include "mot/core/rng.hpp"
#include "mot/model/diffusion.hpp"
#include "mot/model/model.hpp"

namespace mot {

namespace {

uint64_t row_seed(uint64_t seed, int64_t row) {
  return seed * 0x9e3779b97f4a7c15ull + static_cast<uint64_t>(row) * 0xd1b54a32d192ed03ull + 0x2545f4914f6cdd1dull;
}

// A row's context: tokens, then optionally one image span (its latents and τ).
struct RowContext {
  std::vector<int32_t> tokens;            // before the span (or the whole row without one)
  const float* span = nullptr;            // [P, D] the span's vectors, or nullptr
  int32_t span_t = 0;
  std::vector<int32_t> after;             // tokens after the span
  int64_t size(int64_t P) const { return static_cast<int64_t>(tokens.size() + after.size()) + (span ? P : 0); }
};

// Positions [from, size) of each row into `b` (from = past[r] keys already cached).
void fill(const ModelConfig& c, const std::vector<RowContext>& rows, const std::vector<int64_t>& from, Batch& b) {
  const int cm = c.continuous_modality();
  const int64_t P = c.modalities[cm].patches_per_image(), D = c.latent_dim(), R = static_cast<int64_t>(rows.size());
  int64_t len = 1;
  for (int64_t r = 0; r < R; ++r) len = std::max(len, rows[r].size(P) - from[r]);
  b.resize(R, len);
  b.enable_vectors(D, false);
  b.past.assign(static_cast<size_t>(R), 0);
  for (int64_t r = 0; r < R; ++r) {
    const RowContext& x = rows[r];
    const int64_t n = x.size(P), t0 = static_cast<int64_t>(x.tokens.size()), t1 = t0 + (x.span ? P : 0);
    b.past[r] = static_cast<int32_t>(from[r]);
    b.row_len[r] = static_cast<int32_t>(n - from[r]);
    int32_t doc = 0;
    for (int64_t t = 0; t < n; ++t) {
      const bool cont = t >= t0 && t < t1;
      const int32_t tok = cont ? 0 : (t < t0 ? x.tokens[t] : x.after[t - t1]);
      if (!cont && c.doc_mask && tok == c.bos_id) doc = static_cast<int32_t>(t);
      if (t < from[r]) continue;
      const int64_t i = b.at(r, t - from[r]);
      b.pos[i] = static_cast<int32_t>(t);
      b.kv_lo[i] = c.doc_mask ? doc : 0;
      if (cont) {
        b.modality[i] = cm;
        b.token[i] = 0;
        b.diffusion_t[i] = x.span_t;
        std::memcpy(b.vector.data() + i * D, x.span + (t - t0) * D, sizeof(float) * D);
        b.kv_hi[i] = static_cast<int32_t>(t1);
      } else {
        b.modality[i] = c.modality_of_token(tok);
        b.token[i] = tok;
        b.kv_hi[i] = static_cast<int32_t>(t + 1);
      }
    }
  }
}

// The model and, with kv_cache, its cache, for R rows of up to `capacity` positions.
struct Session {
  Model model;
  std::vector<std::vector<float>> kv;
  KvCache cache;
  Session(const ModelConfig& c, const float* params, int64_t R, int64_t capacity, const DiffusionSampling& opt)
      : model(c, R, capacity + 1, false, opt.precision) {
    std::memcpy(model.params(), params, sizeof(float) * model.table().total);
    model.set_batch_invariant(true);  // cached and uncached sampling agree bit for bit
    if (!opt.kv_cache) return;
    const int64_t H = c.n_heads, hd = c.head_dim();
    cache.rows = R;
    cache.capacity = capacity;
    kv.assign(static_cast<size_t>(2 * c.n_layers), std::vector<float>(static_cast<size_t>(R * H * capacity * hd)));
    for (int64_t l = 0; l < c.n_layers; ++l) {
      cache.k.push_back(kv[2 * l].data());
      cache.v.push_back(kv[2 * l + 1].data());
    }
    model.attach_kv_cache(&cache);
  }
};

void check_common(const ModelConfig& c, const TransfusionTokens& tok, const DiffusionSampling& opt) {
  if (!c.has_continuous()) fail("internal: diffusion sampling on a model without a continuous modality");
  if (opt.steps < 1 || opt.steps > c.diffusion_steps)
    fail("--steps ", opt.steps, ": must be in [1, ", c.diffusion_steps, "] (the model's diffusion_steps)");
  if (!std::isfinite(opt.cfg) || opt.cfg < 0) fail("--cfg ", opt.cfg, ": must be a finite number >= 0 (0: no guidance)");
  if (!(opt.eta >= 0 && opt.eta <= 1)) fail("--eta ", opt.eta, ": must be in [0, 1] (0: deterministic DDIM, 1: DDPM-like)");
  for (int32_t t : {tok.bos, tok.eos, tok.boi, tok.eoi})
    if (t < 0 || t >= c.vocab_size) fail("the data's special token ids (bos/eos/boi/eoi) do not fit the model");
  validate_sampling(opt.text);
}

}  // namespace

std::vector<int32_t> ddim_steps(int64_t T, int64_t steps) {
  std::vector<int32_t> out;
  for (int64_t k = 0; k < steps; ++k) {
    const double v = steps == 1 ? static_cast<double>(T - 1)
                                : static_cast<double>(T - 1) * static_cast<double>(steps - 1 - k) / (steps - 1);
    out.push_back(static_cast<int32_t>(std::lround(v)));
  }
  return out;
}

void ddim_step(float* z, const double* eps, int64_t n, double a, double a_prev, double eta, Rng& rng, float* x0) {
  // Song et al. 2021, eq. 16: sigma = eta * sqrt((1 - a_prev) / (1 - a)) * sqrt(1 - a / a_prev).
  const double sigma = eta > 0 ? eta * std::sqrt((1 - a_prev) / (1 - a) * (1 - a / a_prev)) : 0.0;
  const double direction = std::sqrt(std::max(0.0, 1 - a_prev - sigma * sigma));
  for (int64_t i = 0; i < n; ++i) {
    const double x = std::clamp((z[i] - std::sqrt(1 - a) * eps[i]) / std::sqrt(a), -1.0, 1.0);
    x0[i] = static_cast<float>(x);
    // The noise direction that agrees with the clamped x0 (not the raw prediction).
    const double e_used = a < 1 ? (z[i] - std::sqrt(a) * x) / std::sqrt(1 - a) : eps[i];
    const double fresh = sigma > 0 ? sigma * rng.normal() : 0.0;
    z[i] = static_cast<float>(std::sqrt(a_prev) * x + direction * e_used + fresh);
  }
}

std::vector<std::vector<float>> sample_images(const ModelConfig& c, const float* params, const TransfusionTokens& tok,
                                              const std::vector<std::vector<int32_t>>& prompts,
                                              const DiffusionSampling& opt) {
  check_common(c, tok, opt);
  if (prompts.empty()) fail("generate: no prompts");
  const int cm = c.continuous_modality();
  const int64_t P = c.modalities[cm].patches_per_image(), D = c.latent_dim(), PD = P * D;
  const bool guided = opt.cfg > 0;
  const int64_t R0 = static_cast<int64_t>(prompts.size()), R = guided ? 2 * R0 : R0;
  std::vector<RowContext> rows(static_cast<size_t>(R));
  std::vector<std::vector<float>> z(static_cast<size_t>(R0));
  std::vector<Rng> rng;  // row r's stream: its starting noise, then (eta > 0) each step's noise
  int64_t capacity = 0;
  for (int64_t r = 0; r < R; ++r) {
    RowContext& x = rows[r];
    if (r < R0) {
      const auto& p = prompts[r];
      if (p.empty() || p[0] != tok.bos) fail("prompt ", r + 1, " does not start with <bos> (id ", tok.bos, ")");
      for (int32_t t : p)
        if (t < 0 || t >= c.vocab_size) fail("prompt ", r + 1, ": token id ", t, " is outside the vocabulary");
      x.tokens = p;
      x.tokens.push_back(tok.boi);
      rng.emplace_back(row_seed(opt.seed, r));
      z[r].resize(static_cast<size_t>(PD));
      for (auto& v : z[r]) v = static_cast<float>(rng[r].normal());
    } else {
      x.tokens = {tok.bos, tok.boi};  // the unconditional twin
    }
    x.span = z[r % R0].data();
    capacity = std::max(capacity, x.size(P));
  }
  if (capacity > c.max_seq_len)
    fail("a prompt of ", capacity - P - 1, " tokens + an image of ", P, " positions exceeds the model's max_seq_len ",
         c.max_seq_len);
  Session s(c, params, R, capacity, opt);
  Batch b;
  b.reserve(R, capacity);
  std::vector<int64_t> from(static_cast<size_t>(R), 0);
  if (opt.kv_cache) {  // prefill the contexts once
    std::vector<RowContext> ctx = rows;
    for (auto& x : ctx) x.span = nullptr;
    fill(c, ctx, from, b);
    std::vector<float> logits(static_cast<size_t>(R * c.vocab_size));
    s.model.last_logits(b, logits.data());
    for (int64_t r = 0; r < R; ++r) from[r] = static_cast<int64_t>(rows[r].tokens.size());
  }
  const CosineSchedule sched(c.diffusion_steps);
  const std::vector<int32_t> taus = ddim_steps(c.diffusion_steps, opt.steps);
  std::vector<float> eps(static_cast<size_t>(R * PD)), x0(static_cast<size_t>(PD));
  std::vector<double> e(static_cast<size_t>(PD));
  std::vector<std::vector<float>> out(static_cast<size_t>(R0), std::vector<float>(static_cast<size_t>(PD)));
  for (size_t k = 0; k < taus.size(); ++k) {
    for (auto& x : rows) x.span_t = taus[k];
    fill(c, rows, from, b);
    s.model.continuous_outputs(b, eps.data());
    // The last step only predicts x0 (a_prev = a, no noise: z is left as it is).
    const bool last = k + 1 == taus.size();
    const double a = sched.alpha_bar(taus[k]);
    const double a_prev = last ? a : sched.alpha_bar(taus[k + 1]);
    for (int64_t r = 0; r < R0; ++r) {
      const float* ec = eps.data() + r * PD;
      const float* eu = guided ? eps.data() + (R0 + r) * PD : nullptr;
      for (int64_t i = 0; i < PD; ++i) e[i] = guided ? eu[i] + opt.cfg * (static_cast<double>(ec[i]) - eu[i]) : ec[i];
      ddim_step(z[r].data(), e.data(), PD, a, a_prev, last ? 0.0 : opt.eta, rng[r], last ? out[r].data() : x0.data());
    }
  }
  return out;
}

std::vector<CaptionResult> caption_images(const ModelConfig& c, const float* params, const TransfusionTokens& tok,
                                          const std::vector<std::vector<float>>& images, const DiffusionSampling& opt) {
  check_common(c, tok, opt);
  if (images.empty()) fail("generate: no images to caption");
  if (opt.max_tokens < 1) fail("--max-tokens ", opt.max_tokens, ": must be >= 1");
  const int cm = c.continuous_modality();
  const int64_t P = c.modalities[cm].patches_per_image(), D = c.latent_dim(), V = c.vocab_size;
  const int64_t R = static_cast<int64_t>(images.size());
  std::vector<RowContext> rows(static_cast<size_t>(R));
  for (int64_t r = 0; r < R; ++r) {
    if (static_cast<int64_t>(images[r].size()) != P * D)
      fail("image ", r + 1, ": ", images[r].size(), " latent values, the model's images have ", P * D);
    for (float v : images[r])
      if (!std::isfinite(v)) fail("image ", r + 1, ": its latents are not finite");
    rows[r].tokens = {tok.bos, tok.boi};
    rows[r].span = images[r].data();
    rows[r].span_t = 0;  // a clean image
    rows[r].after = {tok.eoi};
  }
  const int64_t capacity = 3 + P + opt.max_tokens;
  if (capacity > c.max_seq_len)
    fail("an image of ", P, " positions + ", opt.max_tokens, " caption tokens exceed the model's max_seq_len ", c.max_seq_len);
  Session s(c, params, R, capacity, opt);
  Batch b;
  b.reserve(R, capacity);
  std::vector<int64_t> from(static_cast<size_t>(R), 0);
  std::vector<float> logits(static_cast<size_t>(R * V));
  std::vector<Rng> rng;
  for (int64_t r = 0; r < R; ++r) rng.emplace_back(row_seed(opt.seed, r));
  TokenSampler sampler(V);
  std::vector<TokenRange> allowed;  // text: anything but another image
  if (tok.boi > 0) allowed.push_back({0, tok.boi});
  if (tok.boi + 1 < V) allowed.push_back({tok.boi + 1, static_cast<int32_t>(V)});
  std::vector<CaptionResult> out(static_cast<size_t>(R));
  fill(c, rows, from, b);
  s.model.last_logits(b, logits.data());
  for (int64_t step = 0; step < opt.max_tokens; ++step) {
    bool all = true;
    for (int64_t r = 0; r < R; ++r) {
      CaptionResult& o = out[r];
      if (!o.finished && static_cast<int64_t>(o.tokens.size()) < opt.max_tokens) {
        const int32_t t = sampler.sample(logits.data() + r * V, allowed, opt.text, rng[r]);
        o.tokens.push_back(t);
        rows[r].after.push_back(t);
        o.finished = t == tok.eos;
      }
      all = all && (o.finished || static_cast<int64_t>(o.tokens.size()) >= opt.max_tokens);
    }
    if (all) break;
    // Rows that are done keep re-feeding their last position (the batch keeps its shape).
    for (int64_t r = 0; r < R; ++r) from[r] = opt.kv_cache ? rows[r].size(P) - 1 : 0;
    fill(c, rows, from, b);
    s.model.last_logits(b, logits.data());
  }
  return out;
}

}  // namespace mot
