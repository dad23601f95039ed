#include "doppel/checkpoint/tiny_model.hpp"

#include "doppel/models/layers.hpp"

namespace doppel {

StableDiffusionCheckpoint make_tiny_stable_diffusion(uint64_t seed) {
  StableDiffusionCheckpoint model;
  model.family = ModelFamily::kSd1;
  model.prediction_type = "epsilon";
  model.scheduler_config = family_scheduler_config(ModelFamily::kSd1, "epsilon");
  model.config_origin = "tiny model built in code";

  ClipTextConfig text;
  text.hidden_size = 32;
  text.num_heads = 4;
  text.num_layers = 2;
  text.intermediate_size = 37;
  auto encoder = std::make_shared<ClipTextModelImpl>(text);
  layers::randomize_parameters(*encoder, seed + 1);
  model.text_encoders.push_back({encoder, kSd1TextEncoderPrefix, false, 49407, std::nullopt});

  UNetConfig unet;
  unet.model_channels = 32;
  unet.block_out_channels = {32, 64};
  unet.transformer_depth = {1, 0};
  unet.num_heads = 8;
  unet.context_dim = 32;
  model.unet = UNetModel(unet);
  layers::randomize_parameters(*model.unet, seed + 2);

  VaeConfig vae = VaeConfig::sd();
  vae.base_channels = 32;
  vae.channel_mult = {1, 1, 1, 2};
  model.vae = AutoencoderKL(vae);
  layers::randomize_parameters(*model.vae, seed + 3);
  model.model_hash = "";
  return model;
}

}  // namespace doppel
