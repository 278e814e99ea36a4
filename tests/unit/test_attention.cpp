// Tiled causal attention (src/mot/backend/cpu/attention.hpp) against a naive O(T²)
// softmax attention computed in double with the explicit mask
//   key s visible from query t  <=>  doc_start[t] <= s <= t   (t < row_len).
// Backward is compared with the analytic gradient of L = sum(dO ⊙ O) in double; that
// naive gradient is itself checked against central finite differences of the naive
// double forward. Covers T around the 64-row tile, ragged rows (row_len 0, 1, < T),
// several documents per row (boundaries on, before and after tile edges), head dims
// 8/16/32 and peaky scores (online-softmax rescaling across key tiles).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "mot/backend/cpu/attention.hpp"

using mot::cpu::AttnShape;

namespace {

struct Case {
  int64_t B = 1, H = 1, T = 1, hd = 8;
  std::vector<int32_t> row_len;                 // per row
  std::vector<std::vector<int32_t>> doc_starts;  // per row: document start positions (0 implied)
  double qk_scale = 1.0;                         // multiplies Q and K: larger = peakier softmax
  uint32_t seed = 1;
};

struct Data {
  std::vector<float> Q, K, V, dO;
  std::vector<int32_t> doc_start;  // [B*T]
};

Data make_data(const Case& c) {
  Data d;
  const size_t n = static_cast<size_t>(c.B * c.H * c.T * c.hd);
  std::mt19937 rng(c.seed);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  d.Q.resize(n);
  d.K.resize(n);
  d.V.resize(n);
  d.dO.resize(n);
  // Everything past row_len is filled with (finite) garbage too: it must be ignored.
  for (auto& x : d.Q) x = u(rng) * static_cast<float>(c.qk_scale);
  for (auto& x : d.K) x = u(rng) * static_cast<float>(c.qk_scale);
  for (auto& x : d.V) x = u(rng);
  for (auto& x : d.dO) x = u(rng);
  d.doc_start.assign(static_cast<size_t>(c.B * c.T), 0);
  for (int64_t b = 0; b < c.B; ++b) {
    std::vector<int32_t> starts = {0};
    if (b < static_cast<int64_t>(c.doc_starts.size()))
      starts.insert(starts.end(), c.doc_starts[b].begin(), c.doc_starts[b].end());
    std::sort(starts.begin(), starts.end());
    for (int64_t t = 0; t < c.row_len[b]; ++t) {
      int32_t s0 = 0;
      for (int32_t s : starts)
        if (s <= t) s0 = s;
      d.doc_start[b * c.T + t] = s0;
    }
  }
  return d;
}

// Naive forward for one (b, h) in double. q, k, v: [T, hd] (as double), out o [T, hd], lse [T].
struct Naive {
  int64_t T, hd, L;
  const int32_t* ds;
  std::vector<double> q, k, v, go;  // inputs
  std::vector<double> o, lse;        // forward
  std::vector<double> dq, dk, dv;    // backward

  double scale() const { return 1.0 / std::sqrt(static_cast<double>(hd)); }

  void forward() {
    o.assign(T * hd, 0.0);
    lse.assign(T, 0.0);
    std::vector<double> S(T);
    for (int64_t t = 0; t < L; ++t) {
      double mx = -std::numeric_limits<double>::infinity();
      for (int64_t s = ds[t]; s <= t; ++s) {
        double acc = 0.0;
        for (int64_t c = 0; c < hd; ++c) acc += q[t * hd + c] * k[s * hd + c];
        S[s] = acc * scale();
        mx = std::max(mx, S[s]);
      }
      double z = 0.0;
      for (int64_t s = ds[t]; s <= t; ++s) z += std::exp(S[s] - mx);
      for (int64_t s = ds[t]; s <= t; ++s) {
        const double p = std::exp(S[s] - mx) / z;
        for (int64_t c = 0; c < hd; ++c) o[t * hd + c] += p * v[s * hd + c];
      }
      lse[t] = mx + std::log(z);
    }
  }

  // Gradient of L = sum_{t < L, c} go[t, c] * o[t, c]; needs forward() first.
  void backward() {
    dq.assign(T * hd, 0.0);
    dk.assign(T * hd, 0.0);
    dv.assign(T * hd, 0.0);
    for (int64_t t = 0; t < L; ++t) {
      double D = 0.0;
      for (int64_t c = 0; c < hd; ++c) D += go[t * hd + c] * o[t * hd + c];
      for (int64_t s = ds[t]; s <= t; ++s) {
        double sc = 0.0, dp = 0.0;
        for (int64_t c = 0; c < hd; ++c) {
          sc += q[t * hd + c] * k[s * hd + c];
          dp += go[t * hd + c] * v[s * hd + c];
        }
        const double p = std::exp(sc * scale() - lse[t]);
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
    for (int64_t t = 0; t < L; ++t)
      for (int64_t c = 0; c < hd; ++c) l += go[t * hd + c] * o[t * hd + c];
    return l;
  }
};

Naive naive_for(const Case& c, const Data& d, int64_t b, int64_t h) {
  Naive n{c.T, c.hd, c.row_len[b], d.doc_start.data() + b * c.T, {}, {}, {}, {}, {}, {}, {}, {}, {}};
  const size_t off = static_cast<size_t>((b * c.H + h) * c.T * c.hd), len = c.T * c.hd;
  n.q.assign(d.Q.begin() + off, d.Q.begin() + off + len);
  n.k.assign(d.K.begin() + off, d.K.begin() + off + len);
  n.v.assign(d.V.begin() + off, d.V.begin() + off + len);
  n.go.assign(d.dO.begin() + off, d.dO.begin() + off + len);
  return n;
}

std::string describe(const Case& c) {
  std::ostringstream os;
  os << "B=" << c.B << " H=" << c.H << " T=" << c.T << " hd=" << c.hd << " row_len={";
  for (auto l : c.row_len) os << l << ",";
  os << "} docs={";
  for (const auto& r : c.doc_starts) {
    os << "[";
    for (auto s : r) os << s << ",";
    os << "]";
  }
  os << "} qk_scale=" << c.qk_scale << " seed=" << c.seed;
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

constexpr double kTol = 1e-4;

void check_case(const Case& c) {
  SCOPED_TRACE(describe(c));
  ASSERT_EQ(static_cast<int64_t>(c.row_len.size()), c.B);
  Data d = make_data(c);
  const size_t n = d.Q.size();
  const AttnShape shape{c.B, c.H, c.T, c.hd};
  const float sentinel = 12345.0f;  // O / lse past row_len are not specified; sentinel just fills them
  std::vector<float> O(n, sentinel), lse(static_cast<size_t>(c.B * c.H * c.T), sentinel);
  mot::cpu::attention_forward(shape, d.Q.data(), d.K.data(), d.V.data(), c.row_len.data(), d.doc_start.data(),
                              O.data(), lse.data());
  // Outputs past row_len would otherwise hold garbage that backward must never read: use O/lse
  // exactly as produced (the sentinel stays where forward did not write).
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::vector<float> dQ(n, nan), dK(n, nan), dV(n, nan);
  mot::cpu::attention_backward(shape, d.Q.data(), d.K.data(), d.V.data(), O.data(), lse.data(), d.dO.data(),
                               c.row_len.data(), d.doc_start.data(), dQ.data(), dK.data(), dV.data());

  Cmp co, cl, cq, ck, cv;
  int64_t nonzero_pad = 0;
  std::string first_pad;
  for (int64_t b = 0; b < c.B; ++b) {
    for (int64_t h = 0; h < c.H; ++h) {
      Naive nv = naive_for(c, d, b, h);
      nv.forward();
      nv.backward();
      const int64_t base = (b * c.H + h) * c.T;
      for (int64_t t = 0; t < c.T; ++t) {
        const bool valid = t < c.row_len[b];
        std::ostringstream w;
        w << "b=" << b << " h=" << h << " t=" << t;
        if (valid) cl.add(lse[base + t], nv.lse[t], w.str());
        for (int64_t ch = 0; ch < c.hd; ++ch) {
          const size_t i = static_cast<size_t>((base + t) * c.hd + ch);
          const std::string wc = w.str() + " c=" + std::to_string(ch);
          if (valid) {
            co.add(O[i], nv.o[t * c.hd + ch], wc);
            cq.add(dQ[i], nv.dq[t * c.hd + ch], wc);
            ck.add(dK[i], nv.dk[t * c.hd + ch], wc);
            cv.add(dV[i], nv.dv[t * c.hd + ch], wc);
          } else if (!(dQ[i] == 0.0f && dK[i] == 0.0f && dV[i] == 0.0f)) {
            if (nonzero_pad++ == 0) first_pad = wc;
          }
        }
      }
    }
  }
  EXPECT_EQ(nonzero_pad, 0) << "dQ/dK/dV must be zero past row_len; first at " << first_pad;
  EXPECT_LE(co.rel(), kTol) << "O: worst at " << co.where << " err " << co.max_err << " max|ref| " << co.max_ref;
  // lse is compared absolutely (it is a log): values are O(1..10).
  EXPECT_LE(cl.max_err, kTol * std::max(1.0, cl.max_ref)) << "lse: worst at " << cl.where << " err " << cl.max_err;
  EXPECT_LE(cq.rel(), kTol) << "dQ: worst at " << cq.where << " err " << cq.max_err << " max|ref| " << cq.max_ref;
  EXPECT_LE(ck.rel(), kTol) << "dK: worst at " << ck.where << " err " << ck.max_err << " max|ref| " << ck.max_ref;
  EXPECT_LE(cv.rel(), kTol) << "dV: worst at " << cv.where << " err " << cv.max_err << " max|ref| " << cv.max_ref;
}

}  // namespace

// The naive double backward is the gradient of sum(dO ⊙ O): central differences of the
// naive double forward, on small cases with and without documents.
TEST(AttentionNaive, BackwardMatchesFiniteDifferences) {
  for (int variant = 0; variant < 3; ++variant) {
    Case c;
    c.T = 9;
    c.hd = 4;
    c.row_len = {variant == 2 ? 6 : 9};
    if (variant >= 1) c.doc_starts = {{3, 5}};
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

// T around the 64-row tile, one full-length row.
TEST(AttentionCpu, CausalFullRowsAcrossTileSizes) {
  for (int64_t T : {1, 2, 5, 63, 64, 65, 127, 128, 130}) {
    for (int64_t hd : {8, 16, 32}) {
      Case c;
      c.B = 1;
      c.H = 2;
      c.T = T;
      c.hd = hd;
      c.row_len = {static_cast<int32_t>(T)};
      c.seed = static_cast<uint32_t>(T * 100 + hd);
      check_case(c);
    }
  }
}

// Rows of different valid lengths in one batch, including 0 and 1.
TEST(AttentionCpu, RaggedRowLengths) {
  for (int64_t hd : {8, 16, 32}) {
    Case c;
    c.B = 7;
    c.H = 2;
    c.T = 130;
    c.hd = hd;
    c.row_len = {130, 0, 1, 65, 64, 63, 2};
    c.seed = static_cast<uint32_t>(11 + hd);
    check_case(c);
  }
  {
    Case c;  // a batch of only empty rows
    c.B = 2;
    c.H = 1;
    c.T = 5;
    c.hd = 8;
    c.row_len = {0, 0};
    check_case(c);
  }
  {
    Case c;  // small T, ragged
    c.B = 4;
    c.H = 3;
    c.T = 5;
    c.hd = 16;
    c.row_len = {5, 3, 1, 0};
    check_case(c);
  }
}

// Several documents per row; boundaries before, on and after tile edges, a document of
// one token, a document starting at the last valid position.
TEST(AttentionCpu, DocumentMasks) {
  for (int64_t hd : {8, 16, 32}) {
    Case c;
    c.B = 5;
    c.H = 2;
    c.T = 130;
    c.hd = hd;
    c.row_len = {130, 130, 100, 70, 9};
    c.doc_starts = {
        {50, 64, 100},          // crosses tile 0/1; the tile at 64 starts a document
        {1, 2, 3, 63, 65, 129},  // one-token documents, boundaries around the tile edge
        {10, 99},               // last valid position is its own document
        {66},                   // one tile's queries see two documents' worth of keys
        {4, 5, 8},
    };
    c.seed = static_cast<uint32_t>(500 + hd);
    check_case(c);
  }
  {
    Case c;  // every position its own document: attention to itself only, O == V
    c.B = 1;
    c.H = 1;
    c.T = 70;
    c.hd = 8;
    c.row_len = {70};
    std::vector<int32_t> all;
    for (int32_t t = 1; t < 70; ++t) all.push_back(t);
    c.doc_starts = {all};
    check_case(c);
  }
}

// Large logits: the running max changes between key tiles (online-softmax rescaling),
// and probabilities are far from uniform.
TEST(AttentionCpu, PeakyScores) {
  for (int64_t T : {65, 130, 200}) {
    Case c;
    c.B = 2;
    c.H = 2;
    c.T = T;
    c.hd = 16;
    c.row_len = {static_cast<int32_t>(T), static_cast<int32_t>(T - 7)};
    c.doc_starts = {{}, {static_cast<int32_t>(T / 3)}};
    c.qk_scale = 3.0;
    c.seed = static_cast<uint32_t>(900 + T);
    check_case(c);
  }
}

// Same inputs twice: bit-identical outputs (no dependence on OpenMP scheduling).
TEST(AttentionCpu, Deterministic) {
  Case c;
  c.B = 3;
  c.H = 3;
  c.T = 100;
  c.hd = 16;
  c.row_len = {100, 37, 80};
  c.doc_starts = {{20, 70}, {}, {64}};
  Data d = make_data(c);
  const AttnShape shape{c.B, c.H, c.T, c.hd};
  const size_t n = d.Q.size();
  std::vector<float> O[2], L[2], dQ[2], dK[2], dV[2];
  for (int r = 0; r < 2; ++r) {
    O[r].assign(n, 0.0f);
    L[r].assign(c.B * c.H * c.T, 0.0f);
    dQ[r].assign(n, 0.0f);
    dK[r].assign(n, 0.0f);
    dV[r].assign(n, 0.0f);
    mot::cpu::attention_forward(shape, d.Q.data(), d.K.data(), d.V.data(), c.row_len.data(), d.doc_start.data(),
                                O[r].data(), L[r].data());
    mot::cpu::attention_backward(shape, d.Q.data(), d.K.data(), d.V.data(), O[r].data(), L[r].data(), d.dO.data(),
                                 c.row_len.data(), d.doc_start.data(), dQ[r].data(), dK[r].data(), dV[r].data());
  }
  EXPECT_EQ(O[0], O[1]);
  EXPECT_EQ(L[0], L[1]);
  EXPECT_EQ(dQ[0], dQ[1]);
  EXPECT_EQ(dK[0], dK[1]);
  EXPECT_EQ(dV[0], dV[1]);
}
