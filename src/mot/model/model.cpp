#include "mot/model/model.hpp"

#include <algorithm>
#include <chrono>
#include <limits>
#include <cmath>
#include <cstring>

#include "mot/core/error.hpp"
#include "mot/data/format/token_batch.hpp"
#include "mot/model/memory.hpp"

namespace mot {

void LossSums::add(const LossSums& o) {
  loss += o.loss;
  targets += o.targets;
  diffusion += o.diffusion;
  diffusion_values += o.diffusion_values;
  for (size_t m = 0; m < by_mod.size(); ++m) {
    by_mod[m] += o.by_mod[m];
    targets_by_mod[m] += o.targets_by_mod[m];
  }
}

namespace {
// Runs before any member is built: the parameter table alone walks every layer.
const ModelConfig& fitted(const ModelConfig& c, int64_t rows, int64_t len, bool training, Precision precision) {
  ensure_model_fits(c, rows, len, training, precision);
  return c;
}
}  // namespace

Model::Model(const ModelConfig& cfg, int64_t max_rows, int64_t max_len, bool training, Precision precision,
             Device device, size_t moment_floats)
    : cfg_(fitted(cfg, max_rows, max_len, training, precision)),
      table_(build_param_table(cfg)),
      training_(training),
      be_(make_backend(device, precision)),
      max_rows_(max_rows),
      max_len_(max_len) {
  max_n_ = max_rows * (max_len - 1);
  moment_floats_ = moment_floats > 0 ? std::min(moment_floats, table_.total) : table_.total;
  // Loss chunk: enough rows to keep the output GEMM efficient, few enough that a
  // chunk of logits stays small (about 8 MiB).
  chunk_ = std::clamp<int64_t>((int64_t{2} << 20) / cfg.vocab_size, 16, 1024);
  Arena measure;
  carve(measure);
  be_->map_arena(measure.used());
  carve(be_->arena());
  be_->bind_scratch(scratch_);
  rt_.reserve(cfg, max_rows, max_len);
  token_batch_.reserve(max_rows, max_len);
  adapters_ = make_input_adapters(cfg_);
  objectives_ = make_objectives(cfg_);
  be_->rope_table(max_len, cfg.head_dim(), cfg.rope_theta, ws_.rope_cos, ws_.rope_sin);
  be_->synchronize();  // callers write the parameters next, on the host
}

Model::~Model() = default;

void Model::carve(Arena& a) {
  a.reset_cursor();
  const int64_t N = max_n_, d = cfg_.dim, F = cfg_.ffn_hidden, H = cfg_.n_heads, L = cfg_.n_layers;
  const int64_t BHT = max_rows_ * H * (max_len_ - 1), hd = cfg_.head_dim();
  const size_t P = table_.total;
  const auto mat = [&](int64_t rows, int64_t cols) { return Mat(a.alloc<float>(rows * cols), rows, cols); };
  params_ = a.alloc<float>(P);
  wmat_ = params_;
  if (be_->precision() == Precision::bf16) {
    wmat_ = a.alloc<float>(P);
    scratch_.rounded_weights_begin = wmat_;  // the GEMMs read these as bf16 already
    scratch_.rounded_weights_end = wmat_ + P;
    // Largest activation operand of any GEMM: [N, 2F] / [N, 3d] / [N, E] rows in the
    // layers, a chunk of logits in the head.
    scratch_.bf16_floats =
        std::max(N * std::max({2 * F, 3 * d, cfg_.n_experts, cfg_.latent_dim()}), chunk_ * cfg_.vocab_size);
    scratch_.bf16_a = a.alloc<float>(scratch_.bf16_floats);
    scratch_.bf16_b = a.alloc<float>(scratch_.bf16_floats);
    if (!training_) scratch_.packed_bf16 = a.alloc<uint16_t>(P);  // batch-invariant (generation) layers read these
  }
  if (training_) {
    grads_ = a.alloc<float>(P);
    adam_m_ = a.alloc<float>(moment_floats_);
    adam_v_ = a.alloc<float>(moment_floats_);
  }
  const bool post = cfg_.post_norm(), moe = cfg_.has_moe();
  const int64_t E = cfg_.n_experts;
  auto layer = [&] {
    LayerActs s;
    s.rstd1 = a.alloc<float>(N);
    s.rstd2 = a.alloc<float>(N);
    s.qkv = mat(N, 3 * d);
    if (cfg_.qk_norm) s.qk_rstd = a.alloc<float>(N * 2 * H);
    s.Q = a.alloc<float>(BHT * hd);
    s.K = a.alloc<float>(BHT * hd);
    s.V = a.alloc<float>(BHT * hd);
    s.O = a.alloc<float>(BHT * hd);
    s.lse = a.alloc<float>(BHT);
    s.cat = mat(N, d);
    if (post) s.o_raw = mat(N, d);
    s.h = mat(N, d);
    s.ac = mat(N, 2 * F);
    if (post) s.f_raw = mat(N, d);
    if (moe) {
      s.moe_prob = mat(N, E);
      s.moe_pick = a.alloc<int32_t>(N);
      s.moe_slot = a.alloc<int32_t>(N * E);
    }
    return s;
  };
  acts_.assign(L, LayerActs{});
  xs_.assign(L + 1, Mat{});
  if (training_) {
    for (int64_t l = 0; l < L; ++l) acts_[l] = layer();
    for (int64_t l = 0; l <= L; ++l) xs_[l] = mat(N, d);
  } else {  // inference: one activation set, residual ping-pong between two buffers
    LayerActs shared = layer();
    const Mat ping[2] = {mat(N, d), mat(N, d)};
    for (int64_t l = 0; l < L; ++l) acts_[l] = shared;
    for (int64_t l = 0; l <= L; ++l) xs_[l] = ping[l % 2];
  }
  for (int64_t l = 0; l < L; ++l) acts_[l].x_in = xs_[l];
  ws_.normed = mat(N, d);
  ws_.branch_out = mat(N, d);
  ws_.swiglu = mat(N, F);
  ws_.final_normed = mat(N, d);
  ws_.rstd_f = a.alloc<float>(N);
  ws_.logits = mat(chunk_, cfg_.vocab_size);
  ws_.row_loss = a.alloc<double>(N);
  scratch_.reduce_floats = kReduceChunks * std::max<int64_t>(d, 2 * hd);
  scratch_.reduce = a.alloc<float>(scratch_.reduce_floats);
  ws_.rope_cos = a.alloc<float>(max_len_ * (hd / 2));
  ws_.rope_sin = a.alloc<float>(max_len_ * (hd / 2));
  if (moe) {
    ws_.moe_x = mat(N, d);
    ws_.moe_y = mat(N, d);
    scratch_.expert_order = a.alloc<int32_t>(E * N);
    if (training_) ws_.moe_dprob = mat(N, E);
  }
  if (training_) {
    ws_.d_stream = mat(N, d);
    ws_.d_branch = mat(N, d);
    ws_.d_sublayer_out = mat(N, d);
    // Attention backward reads d(its output) and writes d(its input): pre-norm those
    // are d_stream and d_branch (d_sublayer_out is idle), post-norm d_sublayer_out and
    // d_stream (d_branch is idle).
    ws_.d_cat = post ? ws_.d_branch : ws_.d_sublayer_out;
    ws_.d_qkv = mat(N, 3 * d);
    ws_.d_ac = mat(N, 2 * F);
    ws_.d_swiglu = mat(N, F);
    ws_.dQ = a.alloc<float>(BHT * hd);
    ws_.dK = a.alloc<float>(BHT * hd);
    ws_.dV = a.alloc<float>(BHT * hd);
    ws_.dO = a.alloc<float>(BHT * hd);
  }
  if (cfg_.has_continuous()) {
    ContinuousBuffers& cb = ws_.continuous;
    const int64_t D = cfg_.latent_dim();
    cb.z = mat(N, D);
    cb.eps = mat(N, D);
    cb.pred = mat(N, D);
    cb.phi = mat(N, d);
    cb.t_h = mat(N, d);
    cb.t_act = mat(N, d);
    cb.t_emb = mat(N, d);
    if (training_) cb.t_dact = mat(N, d);
    cb.span_of = a.alloc<int32_t>(N);
    cb.span_seg = a.alloc<int32_t>(N + 1);
  }
  if (!be_->host_memory()) {
    const int64_t BT = max_rows_ * (max_len_ - 1);
    for (int32_t** t : {&dev_.perm, &dev_.key_slot, &dev_.input, &dev_.target, &dev_.pos, &dev_.pool_rows})
      *t = a.alloc<int32_t>(N);
    for (int32_t** t : {&dev_.q_len, &dev_.k_len, &dev_.last_rows}) *t = a.alloc<int32_t>(max_rows_);
    dev_.lo = a.alloc<int32_t>(BT);
    dev_.hi = a.alloc<int32_t>(BT);
    dev_.max_pools = max_rows_ * cfg_.n_modalities();  // Routing::reserve's bound
    dev_.pools = a.alloc<ExpertPool>(dev_.max_pools);
  }
}

// The kernels of a device backend read the routing from its memory: one copy per
// table per batch (DESIGN.md, Backend), then rt_.tables points there.
void Model::upload_routing() {
  if (be_->host_memory()) return;  // build_routing pointed the tables at its own vectors
  const int64_t N = rt_.N, B = rt_.B, BT = rt_.B * rt_.T;
  if (static_cast<int64_t>(rt_.pools.size()) > dev_.max_pools) fail("internal: more MoE pools than carved");
  const auto up = [&](const void* host, void* dst, int64_t n, size_t elem) {
    if (n > 0) be_->upload(host, dst, static_cast<size_t>(n) * elem);
  };
  const KernelTables& h = rt_.tables;
  up(h.perm, dev_.perm, N, sizeof(int32_t));
  up(h.key_slot, dev_.key_slot, N, sizeof(int32_t));
  up(h.input, dev_.input, N, sizeof(int32_t));
  up(h.target, dev_.target, N, sizeof(int32_t));
  up(h.pos, dev_.pos, N, sizeof(int32_t));
  up(h.pool_rows, dev_.pool_rows, N, sizeof(int32_t));
  up(h.pools, dev_.pools, static_cast<int64_t>(rt_.pools.size()), sizeof(ExpertPool));
  up(h.keys.q_len, dev_.q_len, B, sizeof(int32_t));
  up(h.keys.k_len, dev_.k_len, B, sizeof(int32_t));
  up(h.keys.lo, dev_.lo, BT, sizeof(int32_t));
  up(h.keys.hi, dev_.hi, BT, sizeof(int32_t));
  rt_.tables = {dev_.perm, dev_.key_slot, dev_.input, dev_.target, dev_.pos, dev_.pool_rows, dev_.pools,
                KeyRanges{dev_.q_len, dev_.k_len, dev_.lo, dev_.hi}};
}

void Model::attach_kv_cache(KvCache* cache) {
  if (cache && (cache->rows > max_rows_ || cache->capacity > max_len_ ||
                static_cast<int>(cache->k.size()) != cfg_.n_layers || static_cast<int>(cache->v.size()) != cfg_.n_layers))
    fail("KV cache of ", cache->rows, " rows x ", cache->capacity, " keys (", cache->k.size(),
         " layers) does not fit this model (", max_rows_, " rows x ", max_len_, " positions, ", cfg_.n_layers,
         " layers)");
  cache_ = cache;
}

void Model::run(const TokenBatch& tokens, bool backward, const LossScale& scale, LossSums& out) {
  to_batch(cfg_, tokens, token_batch_);
  run(token_batch_, backward, scale, out);
}

void Model::run(const Batch& batch, bool backward, const LossScale& scale, LossSums& out) {
  if (backward && !training_) fail("internal: backward on an inference model");
  if (backward && cache_) fail("internal: backward with a KV cache attached");
  using clock = std::chrono::steady_clock;
  const auto t0 = clock::now();
  forward(batch);
  be_->synchronize();  // a device backend's: so that the times below are the kernels'
  const auto t1 = clock::now();
  head(backward, scale, out);
  const auto t2 = clock::now();
  times_.forward += std::chrono::duration<double>(t1 - t0).count();
  times_.head += std::chrono::duration<double>(t2 - t1).count();
  if (!backward) return;
  // The hook reads this layer's gradients on the host: a device backend finishes first.
  for (int l = cfg_.n_layers - 1; l >= 0; --l) {
    backward_layer(l);
    if (grads_hook_) be_->synchronize(), grads_hook_(l);
  }
  inputs_backward(batch);
  be_->synchronize();  // callers read the gradients
  if (grads_hook_) grads_hook_(-1);
  times_.backward += std::chrono::duration<double>(clock::now() - t2).count();
}

void Model::forward(const Batch& batch) {
  if (cache_ && batch.rows > cache_->rows)
    fail("batch of ", batch.rows, " rows exceeds the KV cache's ", cache_->rows, " rows");
  if (batch.rows > max_rows_ || batch.len > max_len_ - 1)
    fail("batch of ", batch.rows, "x", batch.len + 1, " tokens exceeds the model's buffers (", max_rows_, "x",
         max_len_, ")");
  build_routing(cfg_, batch, rt_, cache_ ? cache_->capacity : 0, max_len_);
  upload_routing();
  // A training step changes the weights, so they are rounded before every forward; an
  // inference model's weights are rounded once (params_changed() asks again).
  if (wmat_ != params_ && (training_ || !weights_rounded_)) {
    be_->round_weights(params_, wmat_, static_cast<int64_t>(table_.total));
    weights_rounded_ = !training_;
  }
  inputs_forward(batch);
  for (int l = 0; l < cfg_.n_layers; ++l) forward_layer(l);
}

void Model::last_logits(const Batch& batch, float* logits) {
  for (int64_t b = 0; b < batch.rows; ++b)
    if (batch.row_len[b] < 1) fail("last_logits: row ", b, " has no position");
  const auto t0 = std::chrono::steady_clock::now();
  forward(batch);
  const int64_t N = rt_.N, V = cfg_.vocab_size;
  const Mat xf = ws_.final_normed.slice(0, N);
  norm_forward(table_.final_norm, xs_[cfg_.n_layers].slice(0, N), xf, ws_.rstd_f);
  last_rows_.resize(static_cast<size_t>(batch.rows));
  for (int64_t b = 0; b < batch.rows; ++b) last_rows_[b] = rt_.inv[b * rt_.T + batch.row_len[b] - 1];
  // A chunk of rows at a time through the output projection (only [chunk, V] logits exist).
  const Mat picked = ws_.normed;  // free after the layers
  for (int64_t r0 = 0; r0 < batch.rows; r0 += ws_.logits.rows) {
    const int64_t r1 = std::min(batch.rows, r0 + ws_.logits.rows);
    const Mat x = picked.slice(0, r1 - r0), z = ws_.logits.slice(0, r1 - r0);
    const int32_t* rows = last_rows_.data() + r0;
    if (!be_->host_memory()) {
      be_->upload(rows, dev_.last_rows, sizeof(int32_t) * (r1 - r0));
      rows = dev_.last_rows;
    }
    be_->gather_rows(xf, rows, x);
    be_->linear_forward(x, wmat_ + table_.output, z);
    be_->download(z.data, logits + r0 * V, sizeof(float) * (r1 - r0) * V);
  }
  times_.forward += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

int64_t Model::moe_threshold_count() const {
  if (!cfg_.has_moe()) return 0;
  int64_t n = 0;
  for (const auto& L : table_.layers) n += static_cast<int64_t>(L.experts.size()) * cfg_.n_experts;
  return n;
}

void Model::set_moe_thresholds(std::vector<float> thresholds) {
  if (!thresholds.empty() && static_cast<int64_t>(thresholds.size()) != moe_threshold_count())
    fail("MoE thresholds: ", thresholds.size(), " values, this model has ", moe_threshold_count(),
         " (layers x ffn copies x experts)");
  moe_thresholds_ = std::move(thresholds);
  if (moe_thresholds_.empty()) threshold_routing_ = false;
}

void Model::use_threshold_routing(bool on) {
  if (on && training_) fail("internal: threshold routing on a training model");
  if (on && moe_thresholds_.empty())
    fail("this MoE model has no routing thresholds (expert choice needs the whole sequence; thresholds are "
         "calibrated when `mot train` saves, so retrain or resume it with this version)");
  threshold_routing_ = on;
}

void Model::measure_routing_agreement(bool on) {
  measure_agreement_ = on;
  agreement_ = RoutingAgreement{};
}

void Model::begin_moe_calibration() {
  calibration_ = std::make_unique<Calibration>();
  calibration_->sum.assign(static_cast<size_t>(moe_threshold_count()), 0.0);
  calibration_->count.assign(static_cast<size_t>(moe_threshold_count()), 0);
}

std::vector<float> Model::end_moe_calibration() {
  if (!calibration_) fail("internal: end_moe_calibration without begin");
  std::vector<float> thr(calibration_->sum.size(), std::numeric_limits<float>::infinity());
  for (size_t i = 0; i < thr.size(); ++i)
    if (calibration_->count[i] > 0) thr[i] = static_cast<float>(calibration_->sum[i] / calibration_->count[i]);
  calibration_.reset();
  return thr;
}

void Model::inputs_forward(const Batch& batch) {
  const AdapterContext c{*be_, rt_, batch, table_, params_, grads_, wmat_, ws_.continuous, ws_.branch_out};
  const Mat x0 = xs_[0].slice(0, rt_.N);
  for_each_block(adapters_, rt_, [&](InputAdapter& a, int64_t s0, int64_t s1) { a.forward(c, s0, s1, x0); });
}

void Model::inputs_backward(const Batch& batch) {
  const AdapterContext c{*be_, rt_, batch, table_, params_, grads_, wmat_, ws_.continuous, ws_.branch_out};
  const ConstMat dx = ws_.d_stream.slice(0, rt_.N);
  for_each_block(adapters_, rt_, [&](InputAdapter& a, int64_t s0, int64_t s1) { a.backward(c, s0, s1, dx); });
}

// Pre-norm:  h = x + Attn(AttnNorm(x));  x' = h + FFN(FfnNorm(h))
// Post-norm: h = x + AttnNorm(Attn(x));  x' = h + FfnNorm(FFN(h))
void Model::forward_layer(int l) {
  const int64_t N = rt_.N;
  const LayerActs& a = acts_[l];
  const LayerOffsets& w = table_.layers[l];
  const Mat x = a.x_in.slice(0, N), h = a.h.slice(0, N), x_out = xs_[l + 1].slice(0, N);
  const Mat normed = ws_.normed.slice(0, N), branch = ws_.branch_out.slice(0, N);
  if (!cfg_.post_norm()) {
    norm_forward(w.attn_norm, x, normed, a.rstd1);
    attention_forward(l, normed, branch);
    be_->add(x, branch, h);
    norm_forward(w.ffn_norm, h, normed, a.rstd2);
    ffn_forward(l, normed, branch);
    be_->add(h, branch, x_out);
  } else {
    const Mat o_raw = a.o_raw.slice(0, N), f_raw = a.f_raw.slice(0, N);
    attention_forward(l, x, o_raw);
    norm_forward(w.attn_norm, o_raw, branch, a.rstd1);
    be_->add(x, branch, h);
    ffn_forward(l, h, f_raw);
    norm_forward(w.ffn_norm, f_raw, branch, a.rstd2);
    be_->add(h, branch, x_out);
  }
}

// In: ws_.d_stream = dL/dx_out. Out: ws_.d_stream = dL/dx_in.
void Model::backward_layer(int l) {
  const int64_t N = rt_.N;
  const LayerActs& a = acts_[l];
  const LayerOffsets& w = table_.layers[l];
  const Mat x = a.x_in.slice(0, N), h = a.h.slice(0, N);
  const Mat d_stream = ws_.d_stream.slice(0, N);
  if (!cfg_.post_norm()) {
    const Mat normed = ws_.normed.slice(0, N), d_branch = ws_.d_branch.slice(0, N);
    // x' = h + FFN(norm(h)): dh = dx' + normᵀ(FFNᵀ(dx'))
    norm_apply(w.ffn_norm, h, a.rstd2, normed);
    ffn_backward(l, normed, d_stream, d_branch, false);
    norm_backward(w.ffn_norm, h, a.rstd2, d_branch, d_stream, true);
    // h = x + Attn(norm(x))
    norm_apply(w.attn_norm, x, a.rstd1, normed);
    attention_backward(l, normed, d_stream, d_branch, false);
    norm_backward(w.attn_norm, x, a.rstd1, d_branch, d_stream, true);
  } else {
    const Mat d_sub = ws_.d_sublayer_out.slice(0, N);
    // x' = h + norm(FFN(h)): dh = dx' + FFNᵀ(normᵀ(dx'))
    norm_backward(w.ffn_norm, a.f_raw.slice(0, N), a.rstd2, d_stream, d_sub, false);
    ffn_backward(l, h, d_sub, d_stream, true);
    // h = x + norm(Attn(x))
    norm_backward(w.attn_norm, a.o_raw.slice(0, N), a.rstd1, d_stream, d_sub, false);
    attention_backward(l, x, d_sub, d_stream, true);
  }
}

}  // namespace mot
