// The models layer's public entry points: the networks, named like the CompVis checkpoint keys.
#pragma once
#include "doppel/models/clip_text.hpp"             // CLIP text encoders (HF and open_clip)
#include "doppel/models/clip_vision.hpp"           // CLIP image encoder for IP-Adapters
#include "doppel/models/control_net.hpp"           // ControlNet
#include "doppel/models/face_recognition_net.hpp"  // the 128-d face embedding net
#include "doppel/models/ip_adapter.hpp"            // IP-Adapter image projections
#include "doppel/models/tiny_autoencoder.hpp"      // TAESD decoder for previews
#include "doppel/models/token_merging.hpp"         // ToMe for SD
#include "doppel/models/unet.hpp"                  // the SD1/SD2/SDXL UNet
#include "doppel/models/unet_config.hpp"           // UNetConfig
#include "doppel/models/vae.hpp"                   // AutoencoderKL
