// The checkpoint layer's public entry points: recognising and loading model files, every
// tensor-name mapping, LoRA merging.
#pragma once
#include "doppel/checkpoint/clip_vision.hpp"               // load_clip_vision_encoder
#include "doppel/checkpoint/control_net.hpp"               // load_control_net
#include "doppel/checkpoint/face_recognition_weights.hpp"  // load_face_recognition_net
#include "doppel/checkpoint/formats/tfjs_weights.hpp"      // TensorFlow.js weight manifests
#include "doppel/checkpoint/formats/torch_pickle.hpp"      // the safe .pt/.ckpt reader
#include "doppel/checkpoint/ip_adapter.hpp"                // load_ip_adapter
#include "doppel/checkpoint/load_state.hpp"                // LoadReport: loaded, missing, unused
#include "doppel/checkpoint/lora.hpp"                      // LoRA files and merging
#include "doppel/checkpoint/model_detection.hpp"           // what kind of model a file is
#include "doppel/checkpoint/model_hash.hpp"                // A1111 model hashes
#include "doppel/checkpoint/stable_diffusion.hpp"          // load_stable_diffusion
#include "doppel/checkpoint/taesd.hpp"                     // load_taesd_decoder
#include "doppel/checkpoint/tensor_names.hpp"              // the one tensor-name map
#include "doppel/checkpoint/textual_inversion.hpp"         // load_textual_inversion
#include "doppel/checkpoint/tiny_model.hpp"                // the built-in tiny model
