// Which validation losses a comparison reports: the per-modality losses every run
// logged (`val_loss/<modality>` over all validation data, and `val/<set>/loss/<modality>`
// per validation set when there are several), labelled for people. The built-in
// corpus's sets (cap, gen, qa) get labels that say which direction they measure.
#pragma once
#include <vector>

#include "mot/compare/report.hpp"
#include "mot/model/config.hpp"

namespace mot::compare {

std::vector<MetricSpec> validation_metrics(const ModelConfig& model, const std::vector<Run>& runs);

}  // namespace mot::compare
