// `mot demo`: the main job end to end. Generates the built-in text+image corpus if
// it is missing, trains the tiny dense and MoT models on identical data (same width,
// depth, tokens and data order) for several seeds, two runs at a time, and writes a
// report with per-modality and per-direction losses, step-matching ratios and a plot.
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>
#include <thread>

#include "mot/cli/commands.hpp"
#include "mot/compare/report.hpp"
#include "mot/compare/runner.hpp"
#include "mot/core/error.hpp"
#include "mot/data/corpus.hpp"
#include "mot/model/config.hpp"
#include "mot/model/flops.hpp"

namespace mot::cli {

namespace fs = std::filesystem;

void register_demo(CLI::App& app, Action& action) {
  struct Opts {
    std::string config = "configs/tiny.toml", data = "data/demo", out = "runs/demo";
    int seeds = 3, parallel = 2;
    int64_t steps = 0, scenes = 0;
    bool fresh = false;
  };
  auto o = std::make_shared<Opts>();
  auto* sub = app.add_subcommand("demo", "Dense vs MoT on the built-in text+image corpus: train, compare, report");
  sub->add_option("--config", o->config, "model config (arch is set to dense and mot)");
  sub->add_option("--data", o->data, "corpus directory (generated if missing)");
  sub->add_option("--out", o->out, "where runs, report.md and loss.png go");
  sub->add_option("--seeds", o->seeds, "seeds per variant")->check(CLI::Range(1, 100));
  sub->add_option("--steps", o->steps, "training steps per run (default: the config's)")->check(CLI::PositiveNumber);
  sub->add_option("--parallel", o->parallel, "runs trained at once (threads are split between them)")
      ->check(CLI::Range(1, 64));
  sub->add_option("--scenes", o->scenes, "training scenes when generating the corpus")->check(CLI::PositiveNumber);
  sub->add_flag("--fresh", o->fresh, "discard earlier runs in --out instead of reusing finished ones");
  sub->callback([o, &action] {
    action = [o] {
      if (!fs::exists(o->config)) fail(o->config, ": config not found (run from the repository root or pass --config)");
      if (!fs::exists(o->data + "/vocab.json")) {
        std::fprintf(stderr, "demo: generating the built-in corpus in %s\n", o->data.c_str());
        data::CorpusOptions co;
        co.out = o->data;
        co.force = true;
        // The demo's corpus: 24x24 images (36 tokens each) and a 512-entry codebook keep
        // documents short, so 3 seeds of both variants train within minutes on 2 cores.
        co.image_size = 24;
        co.codebook = 512;
        if (o->scenes) co.scenes = o->scenes;
        data::synth_corpus(co);
      } else {
        std::fprintf(stderr, "demo: using the corpus in %s\n", o->data.c_str());
      }
      RunConfig rc = load_run_config(o->config, {}, o->data);
      const int64_t steps = o->steps ? o->steps : rc.train.steps;
      if (o->fresh) fs::remove_all(o->out);
      fs::create_directories(o->out);
      const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
      const int threads = std::max(1, static_cast<int>(cores) / o->parallel);
      const std::vector<std::string> variants = {"dense", "mot"};
      std::vector<compare::TrainJob> jobs;
      std::vector<int> seeds;
      for (int s = 1; s <= o->seeds; ++s) seeds.push_back(s);
      for (int s : seeds)
        for (const auto& v : variants) {
          compare::TrainJob j;
          j.label = cat("seed ", s, " ", v);
          j.run_dir = cat(o->out, "/seed-", s, "/", v);
          j.steps = steps;
          j.args = {"--config", o->config, "--data", o->data, "--set", "model.arch=" + v,
                    "--set", cat("train.seed=", s), "--set", cat("train.threads=", threads)};
          jobs.push_back(j);
        }
      for (const auto& v : variants) {
        RunConfig vc = load_run_config(o->config, {"model.arch=" + v}, o->data);
        const ModelCounts k = count_model(vc.model, vc.train.seq_len);
        std::fprintf(stderr, "demo: %s model: %.2fM parameters, %.2fM active per token\n", v.c_str(),
                     k.params_total / 1e6, k.params_active / 1e6);
      }
      std::fprintf(stderr, "demo: training %zu runs of %lld steps, %d at a time with %d thread(s) each\n", jobs.size(),
                   static_cast<long long>(steps), o->parallel, threads);
      compare::run_train_jobs(jobs, o->parallel);

      compare::ReportInput in;
      in.title = "Dense vs MoT on the built-in text+image corpus";
      in.out_dir = o->out;
      in.variants = variants;
      in.seeds = seeds;
      for (const auto& j : jobs) {
        compare::Run r;
        r.variant = j.label.substr(j.label.rfind(' ') + 1);
        r.seed = std::stoi(j.label.substr(5));
        r.metrics = compare::read_metrics(j.run_dir + "/metrics.jsonl");
        in.runs.push_back(std::move(r));
      }
      in.metrics = {
          {"val_loss/text", "text tokens, all held-out documents", true},
          {"val_loss/image", "image tokens, all held-out documents", true},
          {"val/cap/loss/text", "caption given image (captioning)", true},
          {"val/gen/loss/image", "image given caption (generation)", true},
          {"val/qa/loss/text", "text-only question answering", false},
          {"val/gen/loss/text", "caption with no image before it", false},
          {"val/cap/loss/image", "image with no caption before it", false},
      };
      const ModelCounts kd = count_model(load_run_config(o->config, {"model.arch=dense"}, o->data).model, rc.train.seq_len);
      const ModelCounts km = count_model(load_run_config(o->config, {"model.arch=mot"}, o->data).model, rc.train.seq_len);
      auto millions = [](int64_t n) {
        char b[32];
        std::snprintf(b, sizeof b, "%.2fM", n / 1e6);
        return std::string(b);
      };
      // The corpus facts the report should carry: tokenizer quality and size.
      std::string corpus_facts;
      if (std::ifstream sf(o->data + "/summary.json"); sf) {
        try {
          const auto j = nlohmann::json::parse(sf);
          char b[256];
          std::snprintf(b, sizeof b,
                        " Corpus: %lld training tokens; text BPE %d pieces; image VQ %d codes, reconstruction PSNR "
                        "%.1f dB on held-out images.",
                        static_cast<long long>(j["shards"]["train-000.shard"]["tokens"].get<int64_t>()),
                        j["text_vocab"].get<int>(), j["codebook"].get<int>(),
                        j["vq_psnr_db"]["heldout"].get<double>());
          corpus_facts = b;
        } catch (const nlohmann::json::exception&) {
        }
      }
      in.setup = cat(
          "Both variants share width (d ", rc.model.dim, "), depth (", rc.model.n_layers, " layers, ", rc.model.n_heads,
          " heads), FLOPs per token, data and data order; only `arch` differs. Dense: ",
          millions(kd.params_total), " parameters; MoT: ", millions(km.params_total), " parameters (",
          millions(km.params_active), " active per token, as dense). Each run: ", steps, " steps of ", rc.train.batch_size,
          " rows x ", rc.train.seq_len, " tokens. Data: `", o->data,
          "` (held-out scenes: validation documents show unseen shape/colour combinations; gen = caption then "
          "image, cap = image then caption, qa = text only). Validation every ", rc.train.eval_every,
          " steps on ", rc.train.eval_batches * rc.train.batch_size, " rows per document kind.", corpus_facts, "\n\n",
          "How to read it: a step-matching ratio is only an effect when every seed agrees; \"not stable\" and "
          "\"not reached\" are reported as they are. The paper (Chameleon setting, 37M-7B parameters, far more "
          "tokens) reports MoT reaching dense's image loss in 0.20-0.35 of the steps and text in 0.53-0.66. At this "
          "scale (under 1M parameters, about 2M training tokens) each modality's weights see only their own tokens, "
          "and the per-direction rows show where untying pays off and where sharing still wins.");
      in.commands = cat("mot demo --config ", o->config, " --data ", o->data, " --out ", o->out, " --seeds ", o->seeds,
                        " --steps ", steps);
      const std::string md = compare::write_report(in);
      const auto summary = md.find("## Summary");
      const auto end = md.find("## Time per step");
      std::printf("\n%s", md.substr(summary, end - summary).c_str());
      std::printf("demo: report %s/report.md, plot %s/loss.png\n", o->out.c_str(), o->out.c_str());
      return 0;
    };
  });
}

}  // namespace mot::cli
