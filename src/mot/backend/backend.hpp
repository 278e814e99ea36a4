// The seam between the model and the machine it runs on.
//
// `Model` (src/mot/model/) keeps the schedule: which layer runs, on which contiguous
// block of sorted rows, with which weight copy, and which buffer plays which role. A
// `Backend` owns the memory and computes: every kernel the model needs, each forward
// next to its backward. `CpuBackend` (backend/cpu/) is the fp32/bf16 OpenMP engine;
// a GPU backend implements the same interface beside it.
//
// Buffers are `View`s carved from the backend's arena: a typed pointer with rows,
// columns and a row stride. Views live where the backend computes (host memory for the
// CPU backend, device memory for a GPU one); the model never dereferences them except
// through these calls. Routing tables (which row goes where) are built on the host
// once per batch; a device backend uploads them in `upload_routing`.
//
// Adding a backend: implement this class in backend/<name>/, add it to make_backend()
// (backend.cpp), and run the parity tests (tests/reference/) against it.
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "mot/backend/precision.hpp"
#include "mot/core/arena.hpp"

namespace mot {

// Row reductions (norm weight gradients) sum this many partial sums, in a fixed order,
// so that results do not depend on the thread count; BackendScratch::reduce holds them.
constexpr int64_t kReduceChunks = 16;

// A row-major matrix view: rows x cols elements, row r at data + r * ld.
template <class T>
struct View {
  T* data = nullptr;
  int64_t rows = 0, cols = 0, ld = 0;

  View() = default;
  View(T* p, int64_t r, int64_t c) : data(p), rows(r), cols(c), ld(c) {}
  View(T* p, int64_t r, int64_t c, int64_t stride) : data(p), rows(r), cols(c), ld(stride) {}
  operator View<const T>() const { return {data, rows, cols, ld}; }  // NOLINT: a view may always be read-only

  T* row(int64_t r) const { return data + r * ld; }
  // Rows [r0, r1).
  View slice(int64_t r0, int64_t r1) const { return {data + r0 * ld, r1 - r0, cols, ld}; }
  int64_t size() const { return rows * cols; }
  explicit operator bool() const { return data != nullptr; }
};
using Mat = View<float>;
using ConstMat = View<const float>;

// Attention over [B, H, T, hd] tensors (Q, K, V, O and their gradients; lse [B, H, T]).
struct AttnShape {
  int64_t B = 0, H = 0, Tq = 0, Tk = 0, hd = 0;  // queries / keys per row; Tq == Tk in training
};

// The mask, as one rule: query i of row b (i < q_len[b]) sees the keys
// [lo[b*Tq+i], hi[b*Tq+i]) of its row. Causal, document and bidirectional-span masks
// are all ranges (a causal query t: hi = t + 1; a document: lo = its first position;
// a bidirectional image span: hi = the span's end for every query in it).
struct KeyRanges {
  const int32_t* q_len = nullptr;  // [B] valid queries per row (a prefix)
  const int32_t* k_len = nullptr;  // [B] valid keys per row
  const int32_t* lo = nullptr;     // [B * Tq]
  const int32_t* hi = nullptr;     // [B * Tq]
};

// Where each sorted row's query, key and value go in the attention tensors, and its
// rotary position. Queries (and outputs) are [B, H, Tq, hd]; keys and values
// [B, H, Tk, hd], which may be a KV cache holding earlier positions too.
struct HeadLayout {
  int64_t Tq = 0, Tk = 0, H = 0, hd = 0;
  const int32_t* q_slot = nullptr;   // sorted row -> b * Tq + t
  const int32_t* kv_slot = nullptr;  // sorted row -> b * Tk + key index
  const int32_t* pos = nullptr;      // sorted row -> RoPE position
  const float* rope_cos = nullptr, *rope_sin = nullptr;  // [positions, hd / 2]
};

// Per-head RMSNorm of q and k (qk_norm); q_w == nullptr: none.
struct QkNorm {
  const float* q_w = nullptr, *k_w = nullptr;  // [hd] weights of the rows' copy
  float eps = 0.0f;
  float* rstd = nullptr;  // [N, 2H]: q heads then k heads, indexed by sorted row
};

// Expert choice (SPEC section 2, MoE): a pool is one batch row's positions in one MoE
// row group; each expert picks k = floor(size / E) of its members.
struct ExpertPool {
  int64_t begin = 0, size = 0;  // its sorted rows are members[begin, begin + size), in position order
  int64_t pick0 = 0;            // where its picks start in each expert's pick list of the group
};

// The pools of one MoE row group (model/routing.hpp: MoeGroup).
struct ExpertChoice {
  int64_t experts = 0;                // E
  const ExpertPool* pools = nullptr;  // pools[pool0, pool1)
  int64_t pool0 = 0, pool1 = 0;
  const int32_t* members = nullptr;
  int64_t k_total = 0;  // picks per expert over the group (the sum of its pools' k)
  int64_t rows = 0;     // N: stride of the scratch order table
};

// Decoupled AdamW on a contiguous slice (PyTorch's AdamW formula).
struct AdamWStep {
  float lr, beta1, beta2, eps, weight_decay;  // weight_decay already 0 for no-decay tensors
  float bias1, bias2;                          // 1 - beta^t
  float one_minus_beta1, one_minus_beta2;      // computed in double: 1 - 0.999f is not 0.001
};

// Scratch a backend's kernels use, carved by the model with everything else.
struct BackendScratch {
  float* reduce = nullptr;        // partial sums of row reductions (norm weight gradients)
  int64_t reduce_floats = 0;
  int32_t* expert_order = nullptr;  // [E, N] expert-choice sort scratch
  // bf16 GEMMs: rounded copies of activation operands.
  float* bf16_a = nullptr, *bf16_b = nullptr;
  int64_t bf16_floats = 0;
  const float* rounded_weights_begin = nullptr, *rounded_weights_end = nullptr;
  // bf16 inference: the weights as bf16 bit patterns (round_weights fills them), what
  // batch-invariant linear layers read (half the memory traffic of fp32).
  uint16_t* packed_bf16 = nullptr;
};

class Backend {
 public:
  explicit Backend(Precision p) : precision_(p) {}
  Backend(const Backend&) = delete;
  Backend& operator=(const Backend&) = delete;
  virtual ~Backend() = default;

  virtual const char* name() const = 0;
  Precision precision() const { return precision_; }

  // ---- memory
  // The one allocation: the model carves a measuring Arena, then the backend maps the
  // real one and the model carves it again (core/arena.hpp).
  Arena& arena() { return arena_; }
  virtual void map_arena(size_t bytes) { arena_.map(bytes); }
  virtual void bind_scratch(const BackendScratch& s) = 0;
  // Copies into backend memory (no-ops on the CPU, where views are host memory).
  virtual void upload(const void* host, void* dst, size_t bytes);
  virtual void download(const void* src, void* host, size_t bytes);
  // Whether the kernels read host memory (the CPU). A device backend's arena is memory
  // both sides can address (CUDA managed memory) but its kernels run asynchronously:
  // the model uploads its routing tables into the arena and calls synchronize() before
  // the host reads what kernels wrote (losses, gradients after run()).
  virtual bool host_memory() const { return true; }
  virtual void synchronize() {}
  virtual void zero(float* x, int64_t n);  // x[0, n) = 0 (gradients before a step)

  // ---- linear layers on a block of rows; W is [out, in] row-major (nn.Linear's layout).
  // In bf16, operands are rounded to bf16 and products summed in fp32.
  virtual void linear_forward(ConstMat x, const float* W, Mat y) = 0;                  // y = x·Wᵀ
  virtual void linear_backward_input(ConstMat dy, const float* W, Mat dx, bool accumulate) = 0;  // dx (+)= dy·W
  virtual void linear_backward_weight(ConstMat dy, ConstMat x, float* dW) = 0;         // dW += dyᵀ·x
  // bf16: rounds the weights the linear layers read, once per step.
  virtual void round_weights(const float* params, float* rounded, int64_t n) = 0;
  // Generation: linear_forward computes every output row from its own input row alone,
  // in one fixed order (no dependence on how many rows are in the batch), so the KV-cache
  // decoder and the whole-prefix recompute give bit-identical logits.
  virtual void set_batch_invariant(bool on) { batch_invariant_ = on; }
  bool batch_invariant() const { return batch_invariant_; }

  // ---- token embedding (tied table [V, d])
  virtual void embed_forward(const int32_t* ids, const float* table, Mat x) = 0;
  // dtable[ids[r]] += dx[r], rows in order (deterministic when ids repeat).
  virtual void embed_backward(const int32_t* ids, ConstMat dx, float* dtable) = 0;

  // ---- RMSNorm on a block of rows with one weight copy
  virtual void rmsnorm_forward(ConstMat x, const float* w, float eps, Mat y, float* rstd) = 0;
  virtual void rmsnorm_apply(ConstMat x, const float* w, const float* rstd, Mat y) = 0;  // forward again from rstd
  // dx (+)= d/dx; dw += Σ_r dy_r ⊙ x_r rstd_r.
  virtual void rmsnorm_backward(ConstMat x, const float* w, const float* rstd, ConstMat dy, Mat dx, bool accumulate,
                                float* dw) = 0;

  // ---- residual
  virtual void add(ConstMat a, ConstMat b, Mat y) = 0;  // y = a + b; y may alias a

  // ---- rows <-> heads, QK-norm and RoPE
  // The rotary tables [positions, hd / 2], computed once on the host in double precision
  // (stored as float) and uploaded: the same bits on every backend.
  void rope_table(int64_t positions, int64_t hd, double theta, float* cos, float* sin);
  // Sorted rows [s0, s1) of qkv ([N, 3d]) to Q, K, V ([B, H, T, hd]) with QK-norm and RoPE.
  virtual void heads_forward(const HeadLayout& lay, int64_t s0, int64_t s1, ConstMat qkv, const QkNorm& qk, float* Q,
                             float* K, float* V) = 0;
  // The reverse: dQ, dK, dV of rows [s0, s1) to dqkv; QK-norm weight gradients += into dq_w, dk_w.
  virtual void heads_backward(const HeadLayout& lay, int64_t s0, int64_t s1, ConstMat qkv, const QkNorm& qk,
                              const float* dQ, const float* dK, const float* dV, Mat dqkv, float* dq_w,
                              float* dk_w) = 0;
  // O ([B, H, T, hd]) to rows with heads concatenated ([N, d]), and back.
  virtual void heads_to_rows(const HeadLayout& lay, const float* O, Mat cat) = 0;
  virtual void rows_to_heads(const HeadLayout& lay, ConstMat dcat, float* dO) = 0;

  // ---- attention (softmax(q kᵀ / sqrt(hd)) v under KeyRanges)
  virtual void attention_forward(const AttnShape& s, const float* Q, const float* K, const float* V,
                                 const KeyRanges& mask, float* O, float* lse) = 0;
  // Overwrites dQ, dK, dV.
  virtual void attention_backward(const AttnShape& s, const float* Q, const float* K, const float* V,
                                  const float* O, const float* lse, const float* dO, const KeyRanges& mask,
                                  float* dQ, float* dK, float* dV) = 0;

  // ---- SwiGLU on ac = [a | c] rows of 2F: g = silu(a) ⊙ c
  virtual void swiglu_forward(ConstMat ac, Mat g) = 0;
  virtual void swiglu_backward(ConstMat ac, ConstMat dg, Mat dac) = 0;

  // ---- next-token cross-entropy on a chunk of logits rows, in place.
  // row_loss[r] = logsumexp(z_r) - z_r[target[r]] (0 where target < 0); with backward,
  // z_r becomes grad_scale * (softmax(z_r) - onehot(target[r])) (0 where target < 0).
  virtual void cross_entropy(Mat logits, const int32_t* target, float grad_scale, bool backward,
                             double* row_loss) = 0;

  // ---- Transfusion (SPEC 2b): the time embedding's SiLU, the ε-MSE, per-span sums
  virtual void silu_forward(ConstMat x, Mat y) = 0;
  virtual void silu_backward(ConstMat x, ConstMat dy, Mat dx) = 0;  // dx = dy ⊙ silu'(x)
  // row_loss[r] = Σ_j (pred_rj - target_rj)² (in double); with backward, pred becomes
  // grad_scale · 2 (pred - target), in place.
  virtual void squared_error(Mat pred, ConstMat target, float grad_scale, bool backward, double* row_loss) = 0;
  // y[k] = Σ_{r in [seg[k], seg[k+1])} x[r] for k < y.rows, rows summed in order.
  virtual void sum_row_segments(ConstMat x, const int32_t* seg, Mat y) = 0;

  // ---- mixture of experts (expert choice)
  virtual void softmax_rows(Mat z) = 0;                                  // in place, exact exp
  virtual void softmax_rows_backward(ConstMat p, Mat dp) = 0;            // dp <- p ⊙ (dp - Σ p dp)
  virtual void gather_rows(ConstMat src, const int32_t* rows, Mat dst) = 0;  // dst[j] = src[rows[j]]
  // For each pool and expert: the k = floor(size / E) members with the highest prob
  // (ties: earlier position). pick[e * k_total + pool_pick0 + j] = the sorted row;
  // slot[s * E + e] = its index in pick, -1 if not picked.
  virtual void expert_choice(const ExpertChoice& c, ConstMat prob, int32_t* pick, int32_t* slot) = 0;
  // out[s] = Σ_e prob[s, e] y[slot[s, e]] over rows [s0, s1) (experts in order; 0 if none).
  virtual void expert_combine(int64_t s0, int64_t s1, ConstMat prob, const int32_t* slot, ConstMat y, Mat out) = 0;
  // Backward of the combine at the picks: dprob[s - s0, e] = g_pick · dg_pick, then
  // dg_pick *= p and dy_pick *= p (dprob 0 where not picked).
  virtual void expert_combine_backward(int64_t s0, int64_t s1, ConstMat prob, const int32_t* slot, ConstMat g,
                                       Mat dg, Mat dy, Mat dprob) = 0;
  // din[s] += Σ_e dx[slot[s, e]] over rows [s0, s1), experts in order.
  virtual void expert_scatter_add(int64_t s0, int64_t s1, const int32_t* slot, int64_t experts, ConstMat dx,
                                  Mat din) = 0;
  // Threshold routing (generation: expert choice is not causal). The rows s of
  // [s0, s1) with prob[s, e] >= threshold, ascending, into pick; returns how many (on
  // the host).
  virtual int64_t expert_threshold_pick(int64_t s0, int64_t s1, ConstMat prob, int64_t e, float threshold,
                                        int32_t* pick) = 0;
  // out[pick[j]] += prob[pick[j], e] y[j] for j < n; `first` zeroes rows [s0, s1) of out
  // before (call once per expert, experts in order: the sum of expert_combine).
  virtual void expert_accumulate(int64_t s0, int64_t s1, ConstMat prob, int64_t e, const int32_t* pick, int64_t n,
                                 ConstMat y, Mat out, bool first) = 0;

  // ---- optimizer
  virtual double sum_squares(const float* x, int64_t n) = 0;  // in double, fixed order
  virtual void scale(float* x, int64_t n, float s) = 0;
  virtual void adamw(float* p, const float* g, float* m, float* v, int64_t n, const AdamWStep& s) = 0;

 protected:
  Precision precision_;
  Arena arena_;
  bool batch_invariant_ = false;
};

enum class Device { cpu, cuda };
Device parse_device(const std::string& s, const std::string& where);  // "cpu" | "cuda"
const char* device_name(Device d);
// What the device is, for logs: "cpu", or the GPU's name, memory and driver.
std::string device_description(Device d);
// Fails with one clear line (mot::Error) when `device` cannot run here: a build
// without CUDA, no driver, or no GPU.
std::unique_ptr<Backend> make_backend(Device device, Precision precision);

}  // namespace mot
