// Tiled masked attention (src/mot/backend/cpu/attention.hpp) against a naive O(Tq·Tk)
// softmax attention computed in double with the explicit mask
//   key s visible from query t  <=>  lo[t] <= s < hi[t]   (t < q_len, s < k_len).
// Backward is compared with the analytic gradient of L = sum(dO ⊙ O) in double; that
// naive gradient is itself checked against central finite differences of the naive
// double forward. Masks: causal, causal within documents, Transfusion-style
// bidirectional image spans (full attention inside a span, causal elsewhere), arbitrary
// ranges, empty ranges, and decode shapes (a few queries against a longer key store,
// Tq < Tk). Lengths around the 48-query / 96-key tiles and the 6-row register blocks,
// ragged rows, head dims 8..64 (and one that is not a multiple of 8), peaky scores
// (online-softmax rescaling across key tiles), and bit-identical results for 1 and 2
// threads.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "mot/backend/cpu/attention.hpp"

using mot::cpu::AttnShape;
using mot::cpu::KeyRanges;

namespace {

struct Case {
  int64_t B = 1, H = 1, Tq = 1, Tk = 1, hd = 8;
  std::vector<int32_t> q_len, k_len;  // per row
  std::vector<int32_t> lo, hi;        // [B*Tq]: query t of row b sees keys [lo, hi)
  double qk_scale = 1.0;              // multiplies Q and K: larger = peakier softmax
  uint32_t seed = 1;
  std::string what;  // the mask, for failure messages
  AttnShape shape() const { return {B, H, Tq, Tk, hd}; }
  KeyRanges ranges() const { return {q_len.data(), k_len.data(), lo.data(), hi.data()}; }
};

// Start of the document holding position t: the last of `starts` at or before t (0 if none).
int32_t doc_of(const std::vector<int32_t>& starts, int64_t t) {
  int32_t s0 = 0;
  for (int32_t s : starts)
    if (s <= t && s > s0) s0 = s;
  return s0;
}

// Decode: row b holds k_len[b] keys and its q_len[b] newest positions as queries; query i
// is position k_len - q_len + i, causal within documents.
Case decode_case(int64_t B, int64_t H, int64_t Tq, int64_t Tk, int64_t hd, std::vector<int32_t> q_len,
                 std::vector<int32_t> k_len, std::vector<std::vector<int32_t>> doc_starts = {}) {
  Case c;
  c.B = B, c.H = H, c.Tq = Tq, c.Tk = Tk, c.hd = hd;
  c.q_len = q_len;
  c.k_len = k_len;
  doc_starts.resize(B);
  c.lo.assign(B * Tq, 0);
  c.hi.assign(B * Tq, 0);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t i = 0; i < q_len[b]; ++i) {
      const int64_t p = k_len[b] - q_len[b] + i;
      c.lo[b * Tq + i] = doc_of(doc_starts[b], p);
      c.hi[b * Tq + i] = static_cast<int32_t>(p + 1);
    }
  c.what = "decode";
  return c;
}

// Causal within documents: Tq == Tk == T, row b has row_len[b] positions, doc_starts[b]
// its document starts (0 implied). Positions past row_len get the range [0, 0). (The
// decode case with every position a query.)
Case causal_case(int64_t B, int64_t H, int64_t T, int64_t hd, std::vector<int32_t> row_len,
                 std::vector<std::vector<int32_t>> doc_starts = {}) {
  doc_starts.resize(B);
  Case c = decode_case(B, H, T, T, hd, row_len, row_len, doc_starts);
  std::ostringstream os;
  os << "causal docs={";
  for (const auto& r : doc_starts) {
    os << "[";
    for (auto s : r) os << s << ",";
    os << "]";
  }
  os << "}";
  c.what = os.str();
  return c;
}

// Transfusion: every query of the image span [a, z) of row b also sees the span's later
// keys (hi = z); the span must lie inside one document. Queries outside stay causal.
void add_span(Case& c, int64_t b, int32_t a, int32_t z) {
  for (int32_t t = a; t < z; ++t) c.hi[b * c.Tq + t] = z;
  c.what += " span" + std::to_string(b) + ":[" + std::to_string(a) + "," + std::to_string(z) + ")";
}

struct Data {
  std::vector<float> Q, K, V, dO;
};

Data make_data(const Case& c) {
  Data d;
  const size_t nq = static_cast<size_t>(c.B * c.H * c.Tq * c.hd), nk = static_cast<size_t>(c.B * c.H * c.Tk * c.hd);
  std::mt19937 rng(c.seed);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  d.Q.resize(nq);
  d.K.resize(nk);
  d.V.resize(nk);
  d.dO.resize(nq);
  // Everything past q_len / k_len is filled with (finite) garbage too: it must be ignored.
  for (auto& x : d.Q) x = u(rng) * static_cast<float>(c.qk_scale);
  for (auto& x : d.K) x = u(rng) * static_cast<float>(c.qk_scale);
  for (auto& x : d.V) x = u(rng);
  for (auto& x : d.dO) x = u(rng);
  return d;
}

// Naive attention for one (b, h) in double. q, go: [Tq, hd]; k, v: [Tk, hd].
struct Naive {
  int64_t Tq, Tk, hd, Lq;
  const int32_t *lo, *hi;
  std::vector<double> q, k, v, go;  // inputs
  std::vector<double> o, lse;        // forward (lse = -inf for an empty range)
  std::vector<double> dq, dk, dv;    // backward

  double scale() const { return 1.0 / std::sqrt(static_cast<double>(hd)); }
  double score(int64_t t, int64_t s) const {
    double acc = 0.0;
    for (int64_t c = 0; c < hd; ++c) acc += q[t * hd + c] * k[s * hd + c];
    return acc * scale();
  }

  void forward() {
    o.assign(Tq * hd, 0.0);
    lse.assign(Tq, 0.0);
    for (int64_t t = 0; t < Lq; ++t) {
      double mx = -std::numeric_limits<double>::infinity();
      for (int64_t s = lo[t]; s < hi[t]; ++s) mx = std::max(mx, score(t, s));
      double z = 0.0;
      for (int64_t s = lo[t]; s < hi[t]; ++s) z += std::exp(score(t, s) - mx);
      for (int64_t s = lo[t]; s < hi[t]; ++s) {
        const double p = std::exp(score(t, s) - mx) / z;
        for (int64_t c = 0; c < hd; ++c) o[t * hd + c] += p * v[s * hd + c];
      }
      lse[t] = lo[t] < hi[t] ? mx + std::log(z) : -std::numeric_limits<double>::infinity();
    }
  }

  // Gradient of L = sum_{t < Lq, c} go[t, c] * o[t, c]; needs forward() first.
  void backward() {
    dq.assign(Tq * hd, 0.0);
    dk.assign(Tk * hd, 0.0);
    dv.assign(Tk * hd, 0.0);
    for (int64_t t = 0; t < Lq; ++t) {
      double D = 0.0;
      for (int64_t c = 0; c < hd; ++c) D += go[t * hd + c] * o[t * hd + c];
      for (int64_t s = lo[t]; s < hi[t]; ++s) {
        double dp = 0.0;
        for (int64_t c = 0; c < hd; ++c) dp += go[t * hd + c] * v[s * hd + c];
        const double p = std::exp(score(t, s) - lse[t]);
        const double dsc = p * (dp - D) * scale();
        for (int64_t c = 0; c < hd; ++c) {
          dv[s * hd + c] += p * go[t * hd + c];
          dq[t * hd + c] += dsc * k[s * hd + c];
          dk[s * hd + c] += dsc * q[t * hd + c];
        }
      }
    }
  }

  double loss() {
    forward();
    double l = 0.0;
    for (int64_t t = 0; t < Lq; ++t)
      for (int64_t c = 0; c < hd; ++c) l += go[t * hd + c] * o[t * hd + c];
    return l;
  }
};

Naive naive_for(const Case& c, const Data& d, int64_t b, int64_t h) {
  Naive n{c.Tq, c.Tk, c.hd, c.q_len[b], c.lo.data() + b * c.Tq, c.hi.data() + b * c.Tq, {}, {}, {}, {}, {}, {}, {},
          {}, {}};
  const size_t qoff = static_cast<size_t>((b * c.H + h) * c.Tq * c.hd), qn = c.Tq * c.hd;
  const size_t koff = static_cast<size_t>((b * c.H + h) * c.Tk * c.hd), kn = c.Tk * c.hd;
  n.q.assign(d.Q.begin() + qoff, d.Q.begin() + qoff + qn);
  n.go.assign(d.dO.begin() + qoff, d.dO.begin() + qoff + qn);
  n.k.assign(d.K.begin() + koff, d.K.begin() + koff + kn);
  n.v.assign(d.V.begin() + koff, d.V.begin() + koff + kn);
  return n;
}

std::string describe(const Case& c) {
  std::ostringstream os;
  os << "B=" << c.B << " H=" << c.H << " Tq=" << c.Tq << " Tk=" << c.Tk << " hd=" << c.hd << " q_len={";
  for (auto l : c.q_len) os << l << ",";
  os << "} k_len={";
  for (auto l : c.k_len) os << l << ",";
  os << "} " << c.what << " qk_scale=" << c.qk_scale << " seed=" << c.seed;
  return os.str();
}

// Worst |got - ref| over the valid rows of every (b, h), relative to max |ref| (>= 1e-30).
struct Cmp {
  double max_err = 0.0, max_ref = 0.0;
  std::string where;
  void add(double got, double ref, const std::string& w) {
    max_ref = std::max(max_ref, std::abs(ref));
    const double e = std::isfinite(got) ? std::abs(got - ref) : std::numeric_limits<double>::infinity();
    if (e > max_err || (!std::isfinite(e) && where.empty())) {
      max_err = e;
      where = w;
    }
  }
  double rel() const { return max_err / std::max(max_ref, 1e-30); }
};

constexpr double kTol = 1e-5;

struct Out {
  std::vector<float> O, lse, dQ, dK, dV;
};

// Forward then backward on the case's data. O / lse start as `fill` (past q_len they are
// not specified), dQ / dK / dV as NaN (backward must overwrite all of them).
Out run(const Case& c, const Data& d, float fill = 12345.0f) {
  Out r;
  const float nan = std::numeric_limits<float>::quiet_NaN();
  r.O.assign(d.Q.size(), fill);
  r.lse.assign(static_cast<size_t>(c.B * c.H * c.Tq), fill);
  r.dQ.assign(d.Q.size(), nan);
  r.dK.assign(d.K.size(), nan);
  r.dV.assign(d.K.size(), nan);
  mot::cpu::attention_forward(c.shape(), d.Q.data(), d.K.data(), d.V.data(), c.ranges(), r.O.data(), r.lse.data());
  // Outputs past q_len would otherwise hold garbage that backward must never read: use O/lse
  // exactly as produced (the fill value stays where forward did not write).
  mot::cpu::attention_backward(c.shape(), d.Q.data(), d.K.data(), d.V.data(), r.O.data(), r.lse.data(), d.dO.data(),
                               c.ranges(), r.dQ.data(), r.dK.data(), r.dV.data());
  return r;
}

void check_case(const Case& c) {
  SCOPED_TRACE(describe(c));
  ASSERT_EQ(static_cast<int64_t>(c.q_len.size()), c.B);
  ASSERT_EQ(static_cast<int64_t>(c.k_len.size()), c.B);
  ASSERT_EQ(static_cast<int64_t>(c.lo.size()), c.B * c.Tq);
  ASSERT_EQ(static_cast<int64_t>(c.hi.size()), c.B * c.Tq);
  for (int64_t b = 0; b < c.B; ++b) {
    ASSERT_LE(c.q_len[b], c.Tq);
    ASSERT_LE(c.k_len[b], c.Tk);
    for (int64_t t = 0; t < c.q_len[b]; ++t) {
      ASSERT_LE(0, c.lo[b * c.Tq + t]);
      ASSERT_LE(c.lo[b * c.Tq + t], c.hi[b * c.Tq + t]);
      ASSERT_LE(c.hi[b * c.Tq + t], c.k_len[b]);
    }
  }
  const Data d = make_data(c);
  const Out r = run(c, d);

  Cmp co, cl, cq, ck, cv;
  int64_t nonzero_pad = 0, bad_empty_lse = 0;
  std::string first_pad;
  for (int64_t b = 0; b < c.B; ++b) {
    for (int64_t h = 0; h < c.H; ++h) {
      Naive nv = naive_for(c, d, b, h);
      nv.forward();
      nv.backward();
      const int64_t qb = (b * c.H + h) * c.Tq, kb = (b * c.H + h) * c.Tk;
      for (int64_t t = 0; t < c.Tq; ++t) {
        const bool valid = t < c.q_len[b];
        std::ostringstream w;
        w << "b=" << b << " h=" << h << " t=" << t;
        if (valid) {
          if (std::isinf(nv.lse[t]))
            bad_empty_lse += r.lse[qb + t] != -std::numeric_limits<float>::infinity();
          else
            cl.add(r.lse[qb + t], nv.lse[t], w.str());
        }
        for (int64_t ch = 0; ch < c.hd; ++ch) {
          const size_t i = static_cast<size_t>((qb + t) * c.hd + ch);
          const std::string wc = w.str() + " c=" + std::to_string(ch);
          if (valid) {
            co.add(r.O[i], nv.o[t * c.hd + ch], wc);
            cq.add(r.dQ[i], nv.dq[t * c.hd + ch], wc);
          } else if (r.dQ[i] != 0.0f && nonzero_pad++ == 0) {
            first_pad = "dQ " + wc;
          }
        }
      }
      for (int64_t s = 0; s < c.Tk; ++s) {
        const bool valid = s < c.k_len[b];
        for (int64_t ch = 0; ch < c.hd; ++ch) {
          const size_t i = static_cast<size_t>((kb + s) * c.hd + ch);
          std::ostringstream w;
          w << "b=" << b << " h=" << h << " s=" << s << " c=" << ch;
          if (valid) {
            ck.add(r.dK[i], nv.dk[s * c.hd + ch], w.str());
            cv.add(r.dV[i], nv.dv[s * c.hd + ch], w.str());
          } else if (!(r.dK[i] == 0.0f && r.dV[i] == 0.0f) && nonzero_pad++ == 0) {
            first_pad = "dK/dV " + w.str();
          }
        }
      }
    }
  }
  EXPECT_EQ(nonzero_pad, 0) << "dQ past q_len, dK/dV past k_len must be zero; first at " << first_pad;
  EXPECT_EQ(bad_empty_lse, 0) << "an empty range must give lse = -inf";
  EXPECT_LE(co.rel(), kTol) << "O: worst at " << co.where << " err " << co.max_err << " max|ref| " << co.max_ref;
  // lse is compared absolutely (it is a log): values are O(1..10).
  EXPECT_LE(cl.max_err, kTol * std::max(1.0, cl.max_ref)) << "lse: worst at " << cl.where << " err " << cl.max_err;
  EXPECT_LE(cq.rel(), kTol) << "dQ: worst at " << cq.where << " err " << cq.max_err << " max|ref| " << cq.max_ref;
  EXPECT_LE(ck.rel(), kTol) << "dK: worst at " << ck.where << " err " << ck.max_err << " max|ref| " << ck.max_ref;
  EXPECT_LE(cv.rel(), kTol) << "dV: worst at " << cv.where << " err " << cv.max_err << " max|ref| " << cv.max_ref;
}

// A row of length T: text, an image span, text, ... The spans (sorted, disjoint) get
// bidirectional attention; doc_starts as in causal_case.
Case transfusion_case(int64_t H, int64_t T, int64_t hd, const std::vector<std::pair<int32_t, int32_t>>& spans,
                      std::vector<int32_t> doc_starts = {}) {
  Case c = causal_case(1, H, T, hd, {static_cast<int32_t>(T)}, {std::move(doc_starts)});
  for (auto [a, z] : spans) add_span(c, 0, a, z);
  return c;
}

}  // namespace

// The naive double backward is the gradient of sum(dO ⊙ O): central differences of the
// naive double forward, on small cases: causal, documents, a shorter row, a bidirectional
// span, an empty range, decode (Tq < Tk).
TEST(AttentionNaive, BackwardMatchesFiniteDifferences) {
  for (int variant = 0; variant < 6; ++variant) {
    Case c = causal_case(1, 1, 9, 4, {variant == 2 ? 6 : 9}, {variant >= 1 ? std::vector<int32_t>{3, 5} : std::vector<int32_t>{}});
    if (variant == 3) add_span(c, 0, 5, 8);
    if (variant == 4) c.lo[4] = c.hi[4] = 2;
    if (variant == 5) c = decode_case(1, 1, 3, 9, 4, {3}, {8}, {{3}});
    c.qk_scale = 1.5;
    c.seed = 77 + variant;
    Data d = make_data(c);
    Naive nv = naive_for(c, d, 0, 0);
    nv.forward();
    nv.backward();
    const double h = 1e-6;
    double worst = 0.0, mx = 0.0;
    for (auto [vec, grad] : {std::pair{&nv.q, &nv.dq}, std::pair{&nv.k, &nv.dk}, std::pair{&nv.v, &nv.dv}}) {
      for (size_t i = 0; i < vec->size(); ++i) {
        const double x0 = (*vec)[i];
        (*vec)[i] = x0 + h;
        const double lp = nv.loss();
        (*vec)[i] = x0 - h;
        const double lm = nv.loss();
        (*vec)[i] = x0;
        const double fd = (lp - lm) / (2 * h);
        worst = std::max(worst, std::abs(fd - (*grad)[i]));
        mx = std::max(mx, std::abs((*grad)[i]));
      }
    }
    EXPECT_LE(worst, 1e-7 * std::max(1.0, mx)) << "variant " << variant;
    EXPECT_GT(mx, 1e-3);
  }
}

// T around the 48-query and 96-key tiles, one full-length row; hd 20 is not a multiple
// of 8 (the micro-GEMMs' scalar column tail).
TEST(AttentionCpu, CausalFullRowsAcrossTileSizes) {
  for (int64_t T : {1, 2, 5, 7, 47, 48, 49, 95, 96, 97, 150, 193}) {
    for (int64_t hd : {8, 16, 20, 64}) {
      Case c = causal_case(1, 2, T, hd, {static_cast<int32_t>(T)});
      c.seed = static_cast<uint32_t>(T * 100 + hd);
      check_case(c);
    }
  }
}

// Rows of different valid lengths in one batch, including 0 and 1.
TEST(AttentionCpu, RaggedRowLengths) {
  for (int64_t hd : {8, 16, 32}) {
    Case c = causal_case(7, 2, 130, hd, {130, 0, 1, 97, 96, 47, 2});
    c.seed = static_cast<uint32_t>(11 + hd);
    check_case(c);
  }
  check_case(causal_case(2, 1, 5, 8, {0, 0}));          // a batch of only empty rows
  check_case(causal_case(4, 3, 5, 16, {5, 3, 1, 0}));   // small T, ragged
}

// Several documents per row; boundaries before, on and after tile edges, a document of
// one token, a document starting at the last valid position.
TEST(AttentionCpu, DocumentMasks) {
  for (int64_t hd : {8, 16, 64}) {
    Case c = causal_case(5, 2, 130, hd, {130, 130, 100, 70, 9},
                         {
                             {50, 64, 96, 100},          // crosses tile 0/1; the key tile at 96 starts a document
                             {1, 2, 3, 47, 49, 95, 129},  // one-token documents, boundaries around tile edges
                             {10, 99},                   // last valid position is its own document
                             {66},                       // one tile's queries see two documents' worth of keys
                             {4, 5, 8},
                         });
    c.seed = static_cast<uint32_t>(500 + hd);
    check_case(c);
  }
  // Every position its own document: attention to itself only, O == V.
  std::vector<int32_t> all;
  for (int32_t t = 1; t < 70; ++t) all.push_back(t);
  check_case(causal_case(1, 1, 70, 8, {70}, {all}));
}

// Transfusion: text causal, then an image span where every query sees [doc start, span
// end) (so earlier queries of the span see later keys), then causal text again. Spans
// inside one tile, crossing the 48-query and 96-key tile edges, covering whole tiles, at
// the start and the end of the row, back to back, of one position, and inside a later
// document.
TEST(AttentionCpu, BidirectionalSpans) {
  struct Spec {
    int64_t T;
    std::vector<std::pair<int32_t, int32_t>> spans;
    std::vector<int32_t> docs;
  };
  const std::vector<Spec> specs = {
      {7, {{2, 5}}, {}},
      {7, {{0, 7}}, {}},                       // the whole row: full attention
      {7, {{0, 3}, {3, 4}, {5, 7}}, {}},       // back to back, one position, to the end
      {48, {{10, 48}}, {}},                    // to the end of the first query tile
      {48, {{5, 20}, {30, 40}}, {25}},         // second span in a second document
      {97, {{40, 60}, {90, 97}}, {}},          // crosses 48; crosses 96 to the end
      {97, {{1, 96}}, {}},                     // nearly everything, key tile edge
      {150, {{40, 60}, {90, 140}}, {}},        // crosses 48, crosses 96 and 144
      {150, {{0, 100}, {120, 121}}, {}},       // from the start over two key tiles
      {150, {{44, 53}, {95, 98}, {143, 145}}, {30, 94, 142}},  // small spans on tile edges, documents
      {150, {{60, 150}}, {50}},                // a query tile before the span sees none of it
  };
  uint32_t seed = 3000;
  for (const Spec& sp : specs)
    for (int64_t hd : {16, 64}) {
      Case c = transfusion_case(2, sp.T, hd, sp.spans, sp.docs);
      c.seed = seed++;
      check_case(c);
    }
  // Several rows of different lengths in one batch, each with its own spans.
  Case c = causal_case(3, 2, 150, 16, {150, 97, 48}, {{}, {20}, {}});
  add_span(c, 0, 30, 130);
  add_span(c, 1, 20, 50);
  add_span(c, 1, 90, 97);
  add_span(c, 2, 0, 47);
  c.seed = 3100;
  check_case(c);
}

// Ragged rows with bidirectional masks, and q_len != k_len with Tq == Tk: a prefix of
// queries that sees a longer prefix of keys (including later ones).
TEST(AttentionCpu, RaggedQueryLengths) {
  Case c = causal_case(4, 2, 150, 16, {150, 97, 1, 0});
  add_span(c, 0, 40, 110);
  add_span(c, 1, 50, 97);
  c.seed = 3200;
  check_case(c);
  Case p;
  p.B = 3, p.H = 2, p.Tq = p.Tk = 150, p.hd = 16;
  p.q_len = {100, 47, 150};
  p.k_len = {150, 120, 3};
  p.lo.assign(p.B * p.Tq, 0);
  p.hi.assign(p.B * p.Tq, 0);
  for (int64_t b = 0; b < p.B; ++b)
    for (int64_t t = 0; t < p.q_len[b]; ++t) {
      p.lo[b * p.Tq + t] = static_cast<int32_t>(t / 2 % std::max(p.k_len[b], 1));
      p.hi[b * p.Tq + t] = p.k_len[b];
    }
  p.what = "prefix queries, keys [t/2, k_len)";
  p.seed = 3201;
  check_case(p);
}

// Arbitrary ranges: random [lo, hi) per query, so that a tile's queries see disjoint key
// ranges with unseen key tiles between them, and key tiles are seen by scattered queries.
TEST(AttentionCpu, ArbitraryRanges) {
  for (int64_t T : {7, 97, 150, 250}) {
    for (int64_t hd : {16, 64}) {
      Case c = causal_case(2, 2, T, hd, {static_cast<int32_t>(T), static_cast<int32_t>(T * 2 / 3)});
      std::mt19937 rng(static_cast<uint32_t>(T + hd));
      for (int64_t b = 0; b < c.B; ++b) {
        const int32_t L = c.k_len[b];
        for (int64_t t = 0; t < c.q_len[b]; ++t) {
          std::uniform_int_distribution<int32_t> u(0, L);
          int32_t a = u(rng), z = u(rng);
          if (a > z) std::swap(a, z);
          if (rng() % 4 == 0) z = std::min(L, a + 1 + static_cast<int32_t>(rng() % 3));  // a few keys
          if (a == z) z = std::min(L, a + 1), a = z - 1;  // empty ranges are EmptyRanges' job
          c.lo[b * c.Tq + t] = a;
          c.hi[b * c.Tq + t] = z;
        }
      }
      c.what = "random ranges";
      c.seed = static_cast<uint32_t>(T * 7 + hd);
      check_case(c);
    }
  }
}

// Queries with an empty range (lo == hi): O = 0, lse = -inf, no gradient to or through
// them. Single queries, a whole query tile, lo == hi at 0, in the middle and at k_len,
// and a row where every query's range is empty.
TEST(AttentionCpu, EmptyRanges) {
  for (int64_t hd : {16, 64}) {
    Case c = causal_case(3, 2, 150, hd, {150, 97, 60}, {{70}, {}, {}});
    add_span(c, 0, 100, 140);
    const auto empty = [&](int64_t b, int64_t t, int32_t at) { c.lo[b * c.Tq + t] = c.hi[b * c.Tq + t] = at; };
    empty(0, 0, 0);
    empty(0, 5, 3);
    empty(0, 47, 150);
    empty(0, 110, 100);  // inside the span
    for (int64_t t = 48; t < 96; ++t) empty(1, t, static_cast<int32_t>(t));  // a whole query tile
    empty(1, 96, 97);
    for (int64_t t = 0; t < 60; ++t) empty(2, t, static_cast<int32_t>(t % 7));
    c.what += " empty ranges";
    c.seed = static_cast<uint32_t>(4000 + hd);
    check_case(c);
  }
  Case z = causal_case(2, 1, 10, 8, {10, 4});
  z.k_len = {0, 4};  // no keys at all: every range is [0, 0)
  std::fill(z.lo.begin(), z.lo.begin() + 10, 0);
  std::fill(z.hi.begin(), z.hi.begin() + 10, 0);
  z.what = "no keys";
  check_case(z);
}

// Decode: 1..5 new queries per row against k_len cached keys (Tq < Tk), query i at
// position k_len - q_len + i, causal (within documents); forward and backward.
TEST(AttentionCpu, DecodeFewQueriesLongKeys) {
  for (int64_t hd : {16, 64}) {
    Case c = decode_case(6, 2, 5, 150, hd, {1, 2, 3, 5, 4, 0}, {150, 97, 48, 7, 150, 30},
                         {{}, {50}, {}, {}, {148}, {}});
    c.seed = static_cast<uint32_t>(5000 + hd);
    check_case(c);
  }
  for (int32_t q = 1; q <= 5; ++q) {
    Case c = decode_case(1, 3, 5, 200, 16, {q}, {static_cast<int32_t>(95 + q)});
    c.qk_scale = 2.0;
    c.seed = static_cast<uint32_t>(5100 + q);
    check_case(c);
  }
}

// Large logits: the running max changes between key tiles (online-softmax rescaling),
// and probabilities are far from uniform.
TEST(AttentionCpu, PeakyScores) {
  for (int64_t T : {65, 130, 200}) {
    Case c = causal_case(2, 2, T, 16, {static_cast<int32_t>(T), static_cast<int32_t>(T - 7)},
                         {{}, {static_cast<int32_t>(T / 3)}});
    add_span(c, 0, static_cast<int32_t>(T / 4), static_cast<int32_t>(T * 3 / 4));
    c.qk_scale = 3.0;
    c.seed = static_cast<uint32_t>(900 + T);
    check_case(c);
  }
}

// Bit-identical outputs and gradients for 1 and 2 threads (and a repeat), on a
// bidirectional mask with documents and ragged rows: no dependence on OpenMP scheduling.
TEST(AttentionCpu, ThreadCountInvariant) {
  Case c = causal_case(3, 3, 150, 16, {150, 37, 100}, {{20, 70}, {}, {64}});
  add_span(c, 0, 25, 60);
  add_span(c, 0, 90, 150);
  add_span(c, 2, 64, 97);
  const Data d = make_data(c);
  const int threads = omp_get_max_threads();
  Out r[3];
  omp_set_num_threads(1);
  r[0] = run(c, d);
  omp_set_num_threads(2);
  r[1] = run(c, d);
  r[2] = run(c, d);
  omp_set_num_threads(threads);
  const auto same = [](const std::vector<float>& a, const std::vector<float>& b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
  };
  for (int k = 1; k < 3; ++k) {
    EXPECT_TRUE(same(r[0].O, r[k].O)) << k;
    EXPECT_TRUE(same(r[0].lse, r[k].lse)) << k;
    EXPECT_TRUE(same(r[0].dQ, r[k].dQ)) << k;
    EXPECT_TRUE(same(r[0].dK, r[k].dK)) << k;
    EXPECT_TRUE(same(r[0].dV, r[k].dV)) << k;
  }
}
