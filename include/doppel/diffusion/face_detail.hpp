// The face-detail pass (AUTOMATIC1111's ADetailer): after a portrait is made, every chosen face
// is cropped with padding, inpainted at full resolution ("only masked") at a low denoising
// strength, and pasted back feathered, so small faces get the detail a whole-picture pass cannot
// give them. This header holds what the pass needs besides the engine: the faces it is given
// (found by the face layer, injected as a FaceFinder because diffusion cannot include face/),
// its options, the mask of each face and the metadata ADetailer writes. GenerationSession runs it.
#pragma once
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "doppel/core/generation_parameters.hpp"
#include "doppel/core/image.hpp"
#include "doppel/diffusion/inpainting.hpp"

namespace doppel {

struct ImagePoint {
  int x = 0;
  int y = 0;
};

// One face a finder reports.
struct DetectedFace {
  PixelRegion box;  // the face's box in image pixels (clipped to the image)
  // Points around the face (e.g. 68 landmarks plus the forehead); the mask is their convex
  // hull. Empty: the mask is the box.
  std::vector<ImagePoint> outline;
  // The identity descriptor (128-d), when the finder was asked for descriptors.
  std::vector<float> descriptor;
};

// Finds the faces of an image (the face layer's detector, see doppel/face/face_finder.hpp).
struct FaceFinder {
  // Recorded as "ADetailer model".
  std::string name;
  // All faces of the image; descriptors only when `with_descriptors` (they cost a network pass).
  std::function<std::vector<DetectedFace>(const Image& image, bool with_descriptors)> find;
  explicit operator bool() const { return static_cast<bool>(find); }
};

// Which faces the pass repaints.
enum class FaceChoice {
  kLargest,   // the largest face only (ADetailer "mask only top k largest: 1")
  kAll,       // every face found
  kMostLike,  // the face most like FaceDetailOptions::reference (a subject's portrait)
};
// "largest" | "all" | "most_like"; throws kInvalidArgument naming the accepted words.
FaceChoice parse_face_choice(const std::string& text);
std::string face_choice_name(FaceChoice choice);

// A ControlNet steering the face pass, its control image made from each face's crop (ADetailer's
// "ControlNet model" / "module"), e.g. a face-landmark ControlNet with the face_pose preprocessor.
struct FaceDetailControl {
  std::filesystem::path model;
  std::string preprocessor = "face_pose";  // canny | face_pose | none
  double scale = 1.0;
  double guidance_start = 0.0;
  double guidance_end = 1.0;
};

// ADetailer's settings, with its defaults.
struct FaceDetailOptions {
  double strength = 0.4;  // denoising strength of the face inpaint, (0, 1]
  int padding = 32;       // "inpaint only masked padding", pixels around the mask, 0-256
  int mask_blur = 4;      // feathering of the paste, pixels, 0-64
  int dilate = 4;         // grows (> 0) or shrinks (< 0) each face's mask, pixels
  FaceChoice faces = FaceChoice::kLargest;
  std::vector<float> reference;  // kMostLike: the subject's descriptor (FaceDescriptor)
  int64_t steps = 0;             // 0: the request's steps
  std::string prompt;            // empty: the request's prompt
  std::string negative_prompt;   // empty: the request's negative prompt
  // Size the crop is inpainted at; 0: the request's width and height (as ADetailer does).
  int64_t inpaint_width = 0;
  int64_t inpaint_height = 0;
  std::optional<FaceDetailControl> control;
};

// Throws kInvalidArgument naming the setting out of range (and how to fix it).
void check_face_detail_options(const FaceDetailOptions& options);

// The faces `options` chooses among `found` (largest first for kAll); kMostLike needs
// descriptors on the faces and a reference (else kInvalidArgument).
std::vector<DetectedFace> choose_faces(const std::vector<DetectedFace>& found,
                                       const FaceDetailOptions& options);

// The sharp mask (white = repaint) of one face at the image's size: the convex hull of its
// outline (or its box), dilated or eroded by `dilate` pixels.
Image face_mask(const DetectedFace& face, int image_width, int image_height, int dilate);

// Where the pass works for one face.
struct FaceDetailRegion {
  PixelRegion face;  // the detected box
  PixelRegion crop;  // the part of the image inpainted (mask box + padding, grown to the
                     // inpaint size's aspect ratio)
  Image mask;        // the sharp mask at the image's size
};

// What detail_faces did, besides the image.
struct FaceDetailReport {
  int faces_found = 0;
  std::vector<FaceDetailRegion> repainted;  // in the order they were repainted
};

// Adds ADetailer's keys ("ADetailer model", "ADetailer denoising strength", "ADetailer inpaint
// only masked", "ADetailer inpaint padding", ..., "ADetailer version") and doppel's "Face detail
// faces" (how many were repainted; 0 says no face was found) to `parameters`.
void record_face_detail(GenerationParameters& parameters, const FaceDetailOptions& options,
                        const std::string& finder_name, int faces_repainted);

}  // namespace doppel
