// Compute precision of a backend's GEMMs. Parameters, gradients, optimizer state,
// norms, attention, softmax and loss stay fp32 either way (see backend/cpu/matmul.hpp
// for what bf16 means on the CPU).
#pragma once
#include <string>

namespace mot {

enum class Precision { fp32, bf16 };
Precision parse_precision(const std::string& s, const std::string& where);  // "fp32" | "bf16"
const char* precision_name(Precision p);

}  // namespace mot
