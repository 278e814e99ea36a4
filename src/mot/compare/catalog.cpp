#include "mot/compare/catalog.hpp"

#include <set>
#include <string>

namespace mot::compare {

namespace {

struct Known {
  const char* set;
  const char* modality;
  const char* label;
  bool panel;
};

// The built-in corpus (`mot data synth`): each validation scene is one document of
// every kind, so a set's loss on one modality isolates one direction.
const Known kCorpus[] = {
    {"cap", "text", "caption given image (captioning)", true},
    {"gen", "image", "image given caption (generation)", true},
    {"qa", "text", "text-only question answering", false},
    {"gen", "text", "caption with no image before it", false},
    {"cap", "image", "image with no caption before it", false},
};

bool in_every_run(const std::vector<Run>& runs, const std::string& key) {
  for (const auto& r : runs) {
    auto it = r.metrics.find(key);
    if (it == r.metrics.end() || it->second.empty()) return false;
  }
  return !runs.empty();
}

}  // namespace

std::vector<MetricSpec> validation_metrics(const ModelConfig& model, const std::vector<Run>& runs) {
  std::vector<MetricSpec> out;
  for (const auto& m : model.modalities)
    out.push_back({"val_loss/" + m.name,
                   m.continuous ? m.name + " diffusion ε-MSE, τ drawn per image, all validation data"
                                : m.name + " tokens, all validation data",
                   true});
  if (model.has_continuous()) {  // Transfusion (SPEC 2b): fixed-τ diffusion buckets, comparable across runs
    for (int tau : {100, 500, 900})
      out.push_back({"val_loss/diffusion@" + std::to_string(tau),
                     "image diffusion ε-MSE at τ = " + std::to_string(tau) + " (fixed noise)", true});
  }
  // Validation sets, from the keys the runs logged ("val/<set>/loss/<modality>").
  std::set<std::string> sets;
  if (!runs.empty())
    for (const auto& [key, s] : runs.front().metrics)
      if (key.rfind("val/", 0) == 0 && key.find("/loss") != std::string::npos)
        sets.insert(key.substr(4, key.find("/loss") - 4));
  if (sets.size() > 1) {  // one set's losses would only repeat val_loss
    std::set<std::string> done;
    for (const auto& k : kCorpus) {
      const std::string key = std::string("val/") + k.set + "/loss/" + k.modality;
      if (!sets.count(k.set)) continue;
      out.push_back({key, k.label, k.panel});
      done.insert(key);
    }
    for (const auto& set : sets)
      for (const auto& m : model.modalities) {
        const std::string key = "val/" + set + "/loss/" + m.name;
        if (!done.count(key)) out.push_back({key, m.name + " tokens of validation set '" + set + "'", false});
      }
  }
  std::vector<MetricSpec> kept;
  for (auto& m : out)
    if (in_every_run(runs, m.key)) kept.push_back(std::move(m));
  return kept;
}

}  // namespace mot::compare
