// The studio layer's public entry points: style packs, shoot planning, ranking, readiness.
#pragma once
#include "doppel/studio/portrait_ranking.hpp"   // score and rank portraits
#include "doppel/studio/shoot_plan.hpp"         // a shoot as ordered recipes
#include "doppel/studio/style_pack.hpp"         // the looks the studio offers
#include "doppel/studio/subject_readiness.hpp"  // is a subject ready to train
