// The diffusion layer's public entry points. GenerationSession is the only way into the engine
// for every caller (CLI, worker, APIs); the rest are its parts.
#pragma once
#include "doppel/diffusion/generation_session.hpp"         // GenerationSession, SessionRequest
#include "doppel/diffusion/noise_schedule.hpp"             // training noise schedules
#include "doppel/diffusion/prompt_parser.hpp"              // the A1111 prompt language
#include "doppel/diffusion/sampler.hpp"                    // samplers and their registry
#include "doppel/diffusion/stable_diffusion_pipeline.hpp"  // GenerationRequest, the pipeline
