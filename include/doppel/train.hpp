// The train layer's public entry points: LoRA training.
#pragma once
#include "doppel/train/lora_trainer.hpp"   // train a subject LoRA (resumable)
#include "doppel/train/training_data.hpp"  // photos and captions as kohya-ss reads a folder
