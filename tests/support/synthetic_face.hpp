// 68 landmarks of a plausible upright face (iBUG 300-W layout) drawn in code, for tests of
// masks and templates that must not depend on a detector or on ../shared photos.
#pragma once
#include <cmath>
#include <vector>

#include "doppel/face/face_detector.hpp"

namespace doppel::test {

// A face centred at (centre_x, centre_y) (between the eyes), `half_width` from the centre to each
// jaw corner; the chin is 1.2 half-widths below the eyes.
inline std::vector<FacePoint> synthetic_landmarks(int centre_x, int centre_y, int half_width) {
  const double pi = 3.14159265358979323846;
  std::vector<FacePoint> points;
  auto add = [&](double x, double y) {
    points.push_back({static_cast<int>(std::lround(centre_x + x * half_width)),
                      static_cast<int>(std::lround(centre_y + y * half_width))});
  };
  for (int i = 0; i <= 16; ++i)  // jaw, left corner through the chin to the right corner
    add(-std::cos(pi * i / 16), 1.2 * std::sin(pi * i / 16));
  for (int i = 0; i < 5; ++i) add(-0.8 + 0.16 * i, -0.35 - 0.05 * (i == 2));  // right brow
  for (int i = 0; i < 5; ++i) add(0.16 + 0.16 * i, -0.35 - 0.05 * (i == 2));  // left brow
  for (int i = 0; i < 4; ++i) add(0, -0.1 + 0.15 * i);                        // nose bridge
  for (int i = 0; i < 5; ++i) add(-0.2 + 0.1 * i, 0.5);                       // nostrils
  for (int eye = 0; eye < 2; ++eye)
    for (int i = 0; i < 6; ++i)
      add((eye ? 0.45 : -0.45) + 0.15 * std::cos(pi * i / 3), 0.08 * std::sin(pi * i / 3));
  for (int i = 0; i < 12; ++i)  // outer lips
    add(0.35 * std::cos(pi - 2 * pi * i / 12), 0.8 + 0.12 * std::sin(pi - 2 * pi * i / 12));
  for (int i = 0; i < 8; ++i)  // inner lips
    add(0.2 * std::cos(pi - 2 * pi * i / 8), 0.8 + 0.05 * std::sin(pi - 2 * pi * i / 8));
  return points;
}

}  // namespace doppel::test
