// A print sheet: several copies of one ID photo laid out on a photo-paper size
// (4R / 6-inch and others) with cut marks, as a PNG and as a one-page PDF, both
// at the photo's own DPI so every copy prints at the document's size.
#pragma once
#include <string>
#include <vector>

#include "doppel/core/image.hpp"
#include "doppel/idphoto/id_photo_spec.hpp"

namespace doppel {

struct PrintSheetPaper {
  std::string id;  // 4r, 5r, a4, ...
  std::string name;
  double short_side_mm = 0, long_side_mm = 0;
};

const std::vector<PrintSheetPaper>& print_sheet_papers();
// The paper with this id; throws kNotFound listing the known ones.
const PrintSheetPaper& find_print_sheet_paper(const std::string& id);

struct PrintSheetOptions {
  int copies = 8;        // at most what fits; the layout is chosen for this many
  double margin_mm = 4;  // paper edge to the photos (the cut marks are drawn here)
  double gap_mm = 3;     // between copies
};

struct PrintSheet {
  Image image;
  double width_mm = 0, height_mm = 0;  // as laid out (landscape when wider)
  double dpi = 0;
  int copies = 0, columns = 0, rows = 0;
};

// Lays `photo` (the finished ID photo, spec.width_px x spec.height_px) out on `paper`;
// throws kInvalidArgument when not one copy fits or the photo is not the spec's size.
PrintSheet compose_print_sheet(const Image& photo, const IdPhotoSpec& spec,
                               const PrintSheetPaper& paper, const PrintSheetOptions& options = {});

// A one-page PDF of `image` filling a page of width_mm x height_mm, the pixels kept
// lossless (Flate-compressed RGB).
std::string encode_image_pdf(const Image& image, double width_mm, double height_mm,
                             const std::string& title = "doppel ID photo sheet");

}  // namespace doppel
