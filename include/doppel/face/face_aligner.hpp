// Alignment: a similarity transform from a face's landmarks to dlib's mean
// face template gives (a) the 150x150 crop the recognition network expects and
// (b) a head-and-shoulders portrait crop, face centred and scaled the same way
// in every photo, for LoRA training.
#pragma once
#include <functional>

#include "doppel/core/image.hpp"
#include "doppel/face/face_detector.hpp"

namespace doppel {

// Where a square crop of `size` pixels sits in the source image (dlib's
// chip_details): a rectangle of side size * scale, rotated by `angle_rad`
// about its centre.
struct CropGeometry {
  int size = 0;
  double center_x = 0, center_y = 0;
  double scale = 1;      // source pixels per crop pixel
  double angle_rad = 0;  // rotation of the face (roll)
  // The unrotated rectangle, inclusive corners as dlib reports them.
  double left = 0, top = 0, right = 0, bottom = 0;
  // Halvings (2x image pyramid) applied before sampling, to avoid aliasing.
  int pyramid_levels = 0;
};

// dlib's get_face_chip_details(landmarks, size, padding): `padding` is the
// margin around the template face as a fraction of its width.
CropGeometry face_crop_geometry(const FaceDetection& face, int size, double padding);

// The aligned crop exactly as dlib's extract_image_chip makes it (bilinear
// from a 2x pyramid level); parts outside the image are black.
Image extract_face_chip(const Image& image, const FaceDetection& face, int size = 150,
                        double padding = 0.25);

struct PortraitCropOptions {
  int size = 512;
  // Template margin: 0.75 puts the jaw-to-jaw face width at ~40 % of the crop,
  // leaving room for hair and shoulders.
  double padding = 0.75;
};

struct PortraitCrop {
  Image image;
  CropGeometry geometry;
  // Share of the crop that lies outside the photo and was filled by mirroring
  // the border (0 = all real pixels).
  double outside_fraction = 0;
};

// Head-and-shoulders crop at any size, eyes level, borders mirrored.
PortraitCrop extract_portrait_crop(const Image& image, const FaceDetection& face,
                                   const PortraitCropOptions& options = {});

// The aligned crop of the largest face in a photo (the default landmark model, loaded on first
// use): what IP-Adapter's face variants read. Throws kInvalidArgument when no face is found.
std::function<Image(const Image&)> largest_face_crop(int size = 256, double padding = 0.4);

}  // namespace doppel
