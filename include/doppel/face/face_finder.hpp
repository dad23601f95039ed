// The face layer's FaceFinder for the face-detail pass (doppel/diffusion/face_detail.hpp): dlib
// detection and 68 landmarks give each face's box and an outline reaching up to the forehead;
// the recognition network gives its identity descriptor when the pass chooses by likeness.
#pragma once
#include <vector>

#include "doppel/diffusion/face_detail.hpp"
#include "doppel/face/face_analyzer.hpp"

namespace doppel {

// What the face-detail pass records as "ADetailer model".
inline constexpr const char* kFaceFinderName = "dlib_face_68";

// A face's mask outline: its 68 landmarks plus the eyebrows raised by a share of the brow-to-chin
// height (the landmarks stop at the eyebrows, and a forehead left out of the mask keeps its old
// lighting next to the repainted face).
std::vector<ImagePoint> face_outline(const FaceDetection& face);

// The detected face in the form the face-detail pass takes (box clipped to the image).
DetectedFace to_detected_face(const FaceDetection& face, int image_width, int image_height);

// A finder over the given models, loaded on first use (the landmark model for every call, the
// recognition network only when descriptors are asked for). Not thread-safe, like a session.
FaceFinder make_face_finder(const FaceModelPaths& models = {});

}  // namespace doppel
