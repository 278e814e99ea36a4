// summary.json beside report.md: the comparison's numbers for tools (a study that
// aggregates many comparisons, a plot script) so nobody parses markdown. Per variant its
// size; per run the tokens it trained on and its median step time; per validation loss
// every seed's final value and matching ratios (steps, FLOPs, seconds, and the reverse
// step ratio for a variant that ends behind); per run the mean training loss of each
// modality over the last tenth of its steps (to tell fitting from generalising).
#pragma once
#include "mot/compare/report.hpp"

namespace mot::compare {

void write_summary_json(const ReportInput& in);

}  // namespace mot::compare
