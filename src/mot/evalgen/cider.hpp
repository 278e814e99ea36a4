// CIDEr-D (Vedantam, Zitnick and Parikh 2015, "CIDEr: Consensus-based Image Description
// Evaluation"), computed as the coco-caption CiderD scorer does, which is what papers
// report as CIDEr:
//   - n-grams n = 1..4 of each caption; a caption's vector for n holds, per n-gram,
//     tf * (log |images| - log max(1, df)), df = the number of images whose references
//     contain the n-gram (document frequencies come from the references only);
//   - sim_n(c, s) = Σ_ω min(c_ω, s_ω) s_ω / (|c_n| |s_n|)  (0 if either norm is 0; the
//     min is CIDEr-D's clipping), times exp(-(ℓ_c - ℓ_s)² / (2 · 6²)) with ℓ the
//     caption's bigram count (as coco-caption counts length);
//   - an item's score is 10 · mean over n of the mean over its references of sim_n;
//     the corpus score is the mean over items.
// Words: lower-cased runs of letters and digits (the built-in corpus's captions have no
// other tokens worth keeping).
#pragma once
#include <string>
#include <vector>

namespace mot {

std::vector<std::string> caption_words(const std::string& caption);

struct CiderScore {
  double corpus = 0.0;              // mean of per_item
  std::vector<double> per_item;
};

// candidates[i] is scored against references[i] (at least one each). mot::Error on
// mismatched sizes or an item without references.
CiderScore cider_d(const std::vector<std::string>& candidates, const std::vector<std::vector<std::string>>& references);

}  // namespace mot
