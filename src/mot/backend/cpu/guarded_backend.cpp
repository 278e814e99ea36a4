#include "mot/backend/cpu/guarded_backend.hpp"

#include <sys/mman.h>

#include <cerrno>
#include <cstring>

#include "mot/backend/cpu/cpu_backend.hpp"
#include "mot/core/error.hpp"

namespace mot::cpu {

namespace {

class GuardedBackend final : public Backend {
 public:
  explicit GuardedBackend(Precision p) : Backend(p), inner_(std::make_unique<CpuBackend>(p)) {}
  ~GuardedBackend() override { open_to_host(); }
  const char* name() const override { return "cpu-guarded"; }
  bool host_memory() const override { return false; }
  void synchronize() override { open_to_host(); }
  void upload(const void* host, void* dst, size_t bytes) override {
    open_to_host();
    if (bytes) std::memcpy(dst, host, bytes);
  }
  void download(const void* src, void* host, size_t bytes) override {
    open_to_host();
    if (bytes) std::memcpy(host, src, bytes);
  }
  void bind_scratch(const BackendScratch& s) override { inner_->bind_scratch(s); }
  void set_batch_invariant(bool on) override {
    Backend::set_batch_invariant(on);
    inner_->set_batch_invariant(on);
  }

  // Every kernel: the arena open while it runs, closed to the host after it.
#define MOT_GUARDED(call) \
  Kernel k(*this);        \
  return inner_->call
  void zero(float* x, int64_t n) override { MOT_GUARDED(zero(x, n)); }
  void linear_forward(ConstMat x, const float* W, Mat y) override { MOT_GUARDED(linear_forward(x, W, y)); }
  void linear_backward_input(ConstMat dy, const float* W, Mat dx, bool acc) override {
    MOT_GUARDED(linear_backward_input(dy, W, dx, acc));
  }
  void linear_backward_weight(ConstMat dy, ConstMat x, float* dW) override {
    MOT_GUARDED(linear_backward_weight(dy, x, dW));
  }
  void round_weights(const float* p, float* r, int64_t n) override { MOT_GUARDED(round_weights(p, r, n)); }
  void embed_forward(const int32_t* ids, const float* t, Mat x) override { MOT_GUARDED(embed_forward(ids, t, x)); }
  void embed_backward(const int32_t* ids, ConstMat dx, float* dt) override { MOT_GUARDED(embed_backward(ids, dx, dt)); }
  void rmsnorm_forward(ConstMat x, const float* w, float eps, Mat y, float* rstd) override {
    MOT_GUARDED(rmsnorm_forward(x, w, eps, y, rstd));
  }
  void rmsnorm_apply(ConstMat x, const float* w, const float* rstd, Mat y) override {
    MOT_GUARDED(rmsnorm_apply(x, w, rstd, y));
  }
  void rmsnorm_backward(ConstMat x, const float* w, const float* rstd, ConstMat dy, Mat dx, bool acc,
                        float* dw) override {
    MOT_GUARDED(rmsnorm_backward(x, w, rstd, dy, dx, acc, dw));
  }
  void add(ConstMat a, ConstMat b, Mat y) override { MOT_GUARDED(add(a, b, y)); }
  void heads_forward(const HeadLayout& lay, int64_t s0, int64_t s1, ConstMat qkv, const QkNorm& qk, float* Q, float* K,
                     float* V) override {
    MOT_GUARDED(heads_forward(lay, s0, s1, qkv, qk, Q, K, V));
  }
  void heads_backward(const HeadLayout& lay, int64_t s0, int64_t s1, ConstMat qkv, const QkNorm& qk, const float* dQ,
                      const float* dK, const float* dV, Mat dqkv, float* dq_w, float* dk_w) override {
    MOT_GUARDED(heads_backward(lay, s0, s1, qkv, qk, dQ, dK, dV, dqkv, dq_w, dk_w));
  }
  void heads_to_rows(const HeadLayout& lay, const float* O, Mat cat) override { MOT_GUARDED(heads_to_rows(lay, O, cat)); }
  void rows_to_heads(const HeadLayout& lay, ConstMat dcat, float* dO) override {
    MOT_GUARDED(rows_to_heads(lay, dcat, dO));
  }
  void attention_forward(const AttnShape& s, const float* Q, const float* K, const float* V, const KeyRanges& m,
                         float* O, float* lse) override {
    MOT_GUARDED(attention_forward(s, Q, K, V, m, O, lse));
  }
  void attention_backward(const AttnShape& s, const float* Q, const float* K, const float* V, const float* O,
                          const float* lse, const float* dO, const KeyRanges& m, float* dQ, float* dK,
                          float* dV) override {
    MOT_GUARDED(attention_backward(s, Q, K, V, O, lse, dO, m, dQ, dK, dV));
  }
  void swiglu_forward(ConstMat ac, Mat g) override { MOT_GUARDED(swiglu_forward(ac, g)); }
  void swiglu_backward(ConstMat ac, ConstMat dg, Mat dac) override { MOT_GUARDED(swiglu_backward(ac, dg, dac)); }
  void cross_entropy(Mat z, const int32_t* t, float g, bool b, double* l) override {
    MOT_GUARDED(cross_entropy(z, t, g, b, l));
  }
  void silu_forward(ConstMat x, Mat y) override { MOT_GUARDED(silu_forward(x, y)); }
  void silu_backward(ConstMat x, ConstMat dy, Mat dx) override { MOT_GUARDED(silu_backward(x, dy, dx)); }
  void squared_error(Mat p, ConstMat t, float g, bool b, double* l) override { MOT_GUARDED(squared_error(p, t, g, b, l)); }
  void sum_row_segments(ConstMat x, const int32_t* seg, Mat y) override { MOT_GUARDED(sum_row_segments(x, seg, y)); }
  void softmax_rows(Mat z) override { MOT_GUARDED(softmax_rows(z)); }
  void softmax_rows_backward(ConstMat p, Mat dp) override { MOT_GUARDED(softmax_rows_backward(p, dp)); }
  void gather_rows(ConstMat src, const int32_t* rows, Mat dst) override { MOT_GUARDED(gather_rows(src, rows, dst)); }
  void expert_choice(const ExpertChoice& c, ConstMat prob, int32_t* pick, int32_t* slot) override {
    MOT_GUARDED(expert_choice(c, prob, pick, slot));
  }
  void expert_combine(int64_t s0, int64_t s1, ConstMat prob, const int32_t* slot, ConstMat y, Mat out) override {
    MOT_GUARDED(expert_combine(s0, s1, prob, slot, y, out));
  }
  void expert_combine_backward(int64_t s0, int64_t s1, ConstMat prob, const int32_t* slot, ConstMat g, Mat dg, Mat dy,
                               Mat dprob) override {
    MOT_GUARDED(expert_combine_backward(s0, s1, prob, slot, g, dg, dy, dprob));
  }
  void expert_scatter_add(int64_t s0, int64_t s1, const int32_t* slot, int64_t E, ConstMat dx, Mat din) override {
    MOT_GUARDED(expert_scatter_add(s0, s1, slot, E, dx, din));
  }
  // Returns a count to the host: the host waits for it (synchronous, as on a GPU).
  int64_t expert_threshold_pick(int64_t s0, int64_t s1, ConstMat prob, int64_t e, float t, int32_t* pick) override {
    open_to_host();
    return inner_->expert_threshold_pick(s0, s1, prob, e, t, pick);
  }
  void expert_accumulate(int64_t s0, int64_t s1, ConstMat prob, int64_t e, const int32_t* pick, int64_t n, ConstMat y,
                         Mat out, bool first) override {
    MOT_GUARDED(expert_accumulate(s0, s1, prob, e, pick, n, y, out, first));
  }
  double sum_squares(const float* x, int64_t n) override {  // a value for the host: synchronous
    open_to_host();
    return inner_->sum_squares(x, n);
  }
  void scale(float* x, int64_t n, float s) override { MOT_GUARDED(scale(x, n, s)); }
  void adamw(float* p, const float* g, float* m, float* v, int64_t n, const AdamWStep& s) override {
    MOT_GUARDED(adamw(p, g, m, v, n, s));
  }
#undef MOT_GUARDED

 private:
  struct Kernel {
    GuardedBackend& b;
    explicit Kernel(GuardedBackend& g) : b(g) { b.open_to_host(); }
    ~Kernel() { b.close_to_host(); }
  };
  void protect(int prot) {
    if (!arena_.base() || arena_.capacity() == 0) return;
    if (::mprotect(arena_.base(), arena_.capacity(), prot) != 0)
      fail("guarded backend: mprotect: ", std::strerror(errno));
  }
  void open_to_host() {
    if (closed_) protect(PROT_READ | PROT_WRITE), closed_ = false;
  }
  void close_to_host() {
    if (!closed_) protect(PROT_NONE), closed_ = true;
  }

  std::unique_ptr<CpuBackend> inner_;
  bool closed_ = false;
};

}  // namespace

std::unique_ptr<Backend> make_guarded_backend(Precision p) { return std::make_unique<GuardedBackend>(p); }

}  // namespace mot::cpu
