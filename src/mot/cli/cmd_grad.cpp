// Developer command used by the parity tests: gradients of the mean loss.
#include <algorithm>

#include "mot/cli/commands.hpp"
#include "mot/core/cpu_setup.hpp"
#include "mot/data/format/dataset.hpp"
#include "mot/model/model.hpp"
#include "mot/train/checkpoint.hpp"
#include "mot/train/diffusion_draw.hpp"
#include "mot/train/evaluate.hpp"

namespace mot::cli {

void register_grad(CLI::App& app, Action& action) {
  struct Opts { std::string model, input, out, dtype = "fp32", device = "cpu"; int64_t threads = 0; };
  auto o = std::make_shared<Opts>();
  auto* sub = app.add_subcommand("grad", "(developer) write d(mean loss)/d(every parameter) on a .jsonl batch");
  sub->add_option("--model", o->model, "model .safetensors")->required();
  sub->add_option("--input", o->input, ".jsonl rows, all in one batch")->required();
  sub->add_option("--out", o->out, "gradient .safetensors (same names as the model)")->required();
  sub->add_option("--threads", o->threads, "threads (0: all cores)")->check(int_range(0, 4096));
  sub->add_option("--dtype", o->dtype, "GEMM compute precision")->check(CLI::IsMember({"fp32", "bf16"}));
  sub->add_option("--device", o->device, "cpu or cuda")->check(CLI::IsMember({"cpu", "cuda"}));
  sub->callback([o, &action] {
    action = [o] {
      set_threads(static_cast<int>(o->threads));
      const ModelConfig c = read_model_config(o->model);
      auto src = data::jsonl_source(o->input, c);
      TokenBatch batch;
      data::fill_batch(*src, 0, src->n_rows(), batch);
      Model model(c, batch.rows, batch.len, true, parse_precision(o->dtype, "--dtype"),
                  parse_device(o->device, "--device"));
      load_model_weights(o->model, model);
      std::fill(model.grads(), model.grads() + model.table().total, 0.0f);
      if (c.has_continuous()) {  // spans without explicit τ: the evaluation's draws
        Rng row_rng;
        draw_diffusion(c, DiffusionDraw{500, 0.0, -1}, batch, [&](int64_t b) -> Rng& {
          row_rng = Rng(hash_string("mot/eval-noise") ^ static_cast<uint64_t>(b) * 0x9e3779b97f4a7c15ull);
          return row_rng;
        });
      }
      // The scales of the mean losses: a forward pass counts what they are means over.
      LossSums counts;
      counts.reset(c.n_modalities());
      counts.targets = data::count_targets(batch);
      counts.diffusion_values = count_continuous(batch) * c.latent_dim();
      LossSums s;
      s.reset(c.n_modalities());
      model.run(batch, true, counts.scale(c), s);
      save_like_params(o->out, model, model.grads(), {{"kind", "gradient of mean loss"}});
      std::printf("%s\n", loss_json(c, s).dump().c_str());
      return 0;
    };
  });
}

}  // namespace mot::cli
