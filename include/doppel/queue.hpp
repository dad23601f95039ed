// The queue layer's public entry point: durable, leased jobs.
#pragma once
#include "doppel/queue/job_queue.hpp"  // JobQueue
