// The ControlNet face-pose map (A1111's openpose "face only" preprocessor): each detected
// face's 68 dlib landmarks as small white dots on black.
#pragma once
#include <functional>
#include <vector>

#include "doppel/core/image.hpp"
#include "doppel/face/face_detector.hpp"

namespace doppel {

// Filled white circles of `radius` pixels (A1111 draws 3) at every landmark of `faces`, on a
// black width x height image.
Image draw_face_landmarks(int width, int height, const std::vector<std::vector<FacePoint>>& faces,
                          int radius = 3);

// Detects every face of `photo` and draws its landmarks at the photo's size. Throws
// kInvalidArgument when no face is found (a black map would silently steer nothing).
Image face_pose_map(const Image& photo, FaceDetector& detector);

// face_pose_map with the default landmark model, loaded on first use: the "face_pose"
// ControlNet preprocessor every generation session is given.
std::function<Image(const Image&)> face_pose_preprocessor();

}  // namespace doppel
