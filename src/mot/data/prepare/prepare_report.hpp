// The two lines `mot data prepare` ends with on stderr, whatever --quiet says: what
// was written (documents per kind, tokens per modality) and what was skipped (count
// and the first few files with their reasons; summary.json lists them all).
#pragma once
#include <string>

#include <nlohmann/json.hpp>

namespace mot::data {

void print_summary_lines(const nlohmann::json& summary, const std::string& out, double secs);

}  // namespace mot::data
