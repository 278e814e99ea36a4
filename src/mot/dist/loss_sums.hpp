// Loss sums across data-parallel ranks (dist/world.hpp), added in a fixed order.
#pragma once
#include <vector>

#include "mot/dist/world.hpp"
#include "mot/model/model.hpp"

namespace mot::dist {

// Every rank's `mine`, added in rank order (the same total on every rank).
LossSums sum_over_ranks(World& w, const LossSums& mine);

// Slots of per-batch sums, each filled by exactly one rank (the others leave it zero):
// after gather() every rank holds every slot exactly (x + 0 = x), so adding them in
// slot order gives the single-process total bit for bit.
class LossSlots {
 public:
  LossSlots(int modalities, size_t slots);
  void set(size_t slot, const LossSums& s);
  void gather(World& w, const char* what);
  LossSums total() const;  // slot 0 + slot 1 + ... in order

 private:
  size_t width() const { return 4 + 2 * static_cast<size_t>(m_); }
  int m_;
  std::vector<double> v_;
};

}  // namespace mot::dist
