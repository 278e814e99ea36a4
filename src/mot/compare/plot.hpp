// Loss curves of a comparison drawn with gnuplot: one panel per plotted validation
// loss, each seed's run dotted and the mean over seeds solid, one colour per variant.
#pragma once
#include <string>

#include "mot/compare/report.hpp"

namespace mot::compare {

// Writes in.out_dir/<png> with losses against `axis` labelled `xlabel`; the curve data
// go to in.out_dir/curves/. Throws mot::Error if gnuplot fails.
void plot_curves(const ReportInput& in, Axis axis, const std::string& png, const std::string& xlabel);

}  // namespace mot::compare
