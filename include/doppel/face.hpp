// The face layer's public entry points: from a photo to faces, verdicts and identity.
#pragma once
#include "doppel/face/face_analyzer.hpp"      // detection, landmarks, alignment, embedding
#include "doppel/face/face_colour_match.hpp"  // a repainted face to the picture's skin tone
#include "doppel/face/face_pose_map.hpp"      // the ControlNet face-pose map
#include "doppel/face/head_mask.hpp"          // face + hairline masks for repainting
#include "doppel/face/photo_intake.hpp"       // which photos are usable for training
#include "doppel/face/subject_profile.hpp"    // a person's identity profile and likeness
