// The studio layer's public entry points: style packs, shoot planning, ranking, readiness,
// portrait templates.
#pragma once
#include "doppel/studio/portrait_ranking.hpp"   // score and rank portraits
#include "doppel/studio/portrait_template.hpp"  // template files (picture + YAML)
#include "doppel/studio/shoot_plan.hpp"         // a shoot as ordered recipes
#include "doppel/studio/style_pack.hpp"         // the looks the studio offers
#include "doppel/studio/subject_readiness.hpp"  // is a subject ready to train
#include "doppel/studio/template_picture.hpp"   // a template's picture, drawn and kept
#include "doppel/studio/template_portrait.hpp"  // a face put into a template
#include "doppel/studio/template_shot.hpp"      // template shots and their recipes
