// ControlNet preprocessors that need no weights of their own (A1111 extension "modules").
// The face-pose map needs the face layer: see doppel/face/face_pose_map.hpp.
#pragma once
#include "doppel/core/image.hpp"

namespace doppel {

// A1111's "canny": OpenCV Canny on the RGB image (hysteresis thresholds `low` / `high`,
// A1111's defaults 100 / 200), white edges on black, 3 channels, the image's size.
Image canny_edge_map(const Image& image, double low = 100, double high = 200);

}  // namespace doppel
