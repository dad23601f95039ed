// Head pose from the 68 landmarks: a generic 3D face fitted to six landmarks
// (cv::solvePnP). Accurate to roughly +-10 degrees: enough to reject profiles
// and strongly tilted heads, not for measurement.
#pragma once
#include "doppel/face/face_detector.hpp"

namespace doppel {

struct HeadPose {
  double yaw_degrees = 0;    // turn left/right; 0 = facing the camera
  double pitch_degrees = 0;  // nod up/down
  double roll_degrees = 0;   // in-plane tilt
};

// `image_width`/`image_height` set the assumed camera (focal length = the
// longer side, principal point at the centre).
HeadPose estimate_head_pose(const FaceDetection& face, int image_width, int image_height);

}  // namespace doppel
