// `mot evalgen` (SPEC section 4): flags to evalgen/evalgen.hpp, then one JSON object
// (--json) or a table.
#include <cstdio>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "mot/cli/commands.hpp"
#include "mot/core/cpu_setup.hpp"
#include "mot/evalgen/evalgen.hpp"

namespace mot::cli {

namespace {

struct EvalgenOpts : EvalgenOptions {
  int64_t threads = 0;
  bool json_out = false;
};

int print_evalgen(const EvalgenOpts& o) {
  set_threads(static_cast<int>(o.threads));
  const nlohmann::json j = run_evalgen(o);
  if (o.json_out) {
    std::printf("%s\n", j.dump().c_str());
    return 0;
  }
  const bool baseline = !o.baseline.empty();
  auto v = [&](const char* k) { return j.at(k).get<double>(); };
  std::printf("%lld held-out scenes (%s, %.1f s)\n", j["n"].get<long long>(),
              baseline ? ("baseline " + o.baseline).c_str() : o.model.c_str(), v("seconds"));
  std::printf("captions -> images: parse %.3f | count %.3f | shape %.3f | colour %.3f | size %.3f | relation %.3f | "
              "exact %.3f\n", v("image.parse_rate"), v("image.count_acc"), v("image.shape_acc"), v("image.colour_acc"),
              v("image.size_acc"), v("image.relation_acc"), v("image.exact"));
  std::printf("images -> captions: parse %.3f | exact %.3f | slot %.3f | CIDEr-D %.3f\n", v("caption.parse_rate"),
              v("caption.exact"), v("caption.slot_acc"), v("caption.cider"));
  if (j.contains("speech"))
    std::printf("speech -> text:     parse %.3f | exact %.3f | slot %.3f | CIDEr-D %.3f\n", v("speech.parse_rate"),
                v("speech.exact"), v("speech.slot_acc"), v("speech.cider"));
  return 0;
}

}  // namespace

void register_evalgen(CLI::App& app, Action& action) {
  auto o = std::make_shared<EvalgenOpts>();
  auto* sub = app.add_subcommand("evalgen", "Generation quality on the built-in corpus's held-out scenes, scored exactly");
  sub->add_option("--model", o->model, "model .safetensors");
  sub->add_option("--data", o->data, "the corpus (default: the data the run trained on)");
  sub->add_option("--n", o->n, "held-out scenes to score (0: all)")->check(non_negative_int());
  sub->add_option("--seed", o->seed, "sampling seed");
  sub->add_option("--temperature", o->temperature, "softmax temperature (0: greedy; default 1)");
  sub->add_option("--top-k", o->top_k, "sample among the k most likely tokens (0: all)")->check(non_negative_int());
  sub->add_option("--top-p", o->top_p, "nucleus sampling threshold in (0, 1]");
  sub->add_option("--cfg", o->cfg, "classifier-free guidance weight for the images (0: off; default 0, Transfusion 3)")
      ->check(CLI::NonNegativeNumber);
  sub->add_option("--steps", o->steps, "DDIM steps per image (Transfusion models; default 50)")->check(int_range(1, 100000));
  sub->add_option("--eta", o->eta, "DDIM's eta (Transfusion models; 0: deterministic DDIM, the default; 1: DDPM-like, "
                  "fresh noise every step)")->check(CLI::Range(0.0, 1.0));
  sub->add_option("--batch", o->batch, "prompts per generation batch")->check(int_range(1, 4096));
  sub->add_option("--baseline", o->baseline, "score the corpus instead of a model: truth, shuffled or random")
      ->check(CLI::IsMember({"truth", "shuffled", "random"}));
  sub->add_flag("--json", o->json_out, "print one JSON object");
  sub->add_option("--out", o->out, "write the generations (images, captions, a grid PNG) here");
  sub->add_option("--threads", o->threads, "threads (0: all cores)")->check(int_range(0, 4096));
  sub->add_option("--dtype", o->dtype, "GEMM compute precision")->check(CLI::IsMember({"fp32", "bf16"}));
  sub->callback([o, &action] { action = [o] { return print_evalgen(*o); }; });
}

}  // namespace mot::cli
