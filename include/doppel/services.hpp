// The services layer's public entry points: what jobs do and the rules of the product, no HTTP.
#pragma once
#include "doppel/services/id_photo_job.hpp"    // ID photos made, checked and judged by a worker
#include "doppel/services/job_payloads.hpp"    // what the API queues, what workers read
#include "doppel/services/model_registry.hpp"  // registering models, training defaults
#include "doppel/services/subject_intake.hpp"  // the face check of a subject's photos
#include "doppel/services/worker.hpp"          // Worker: train, validation shoot, shoot
