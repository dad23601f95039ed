#include "doppel/idphoto/print_sheet.hpp"

#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <opencv2/imgproc.hpp>

#include "doppel/core/error.hpp"

namespace doppel {
namespace {

constexpr double kMillimetresPerInch = 25.4;
constexpr double kPointsPerInch = 72;

struct Layout {
  bool landscape = true;
  int columns = 0, rows = 0, capacity = 0;
};

// How many photos of w x h mm fit along `length` mm with margins and gaps.
int fitting(double length, double photo, const PrintSheetOptions& o) {
  return std::max(0, int(std::floor((length - 2 * o.margin_mm + o.gap_mm) / (photo + o.gap_mm))));
}

std::string pdf_number(double value) {
  char text[32];
  std::snprintf(text, sizeof text, "%.2f", value);
  return text;
}

}  // namespace

const std::vector<PrintSheetPaper>& print_sheet_papers() {
  static const std::vector<PrintSheetPaper> papers = {
      {"4r", "4R / 6-inch photo paper (4 x 6 in)", 101.6, 152.4},
      {"5r", "5R / 7-inch photo paper (5 x 7 in)", 127.0, 177.8},
      {"a6", "A6 (105 x 148 mm)", 105.0, 148.0},
      {"a4", "A4 (210 x 297 mm)", 210.0, 297.0},
      {"letter", "US Letter (8.5 x 11 in)", 215.9, 279.4},
  };
  return papers;
}

const PrintSheetPaper& find_print_sheet_paper(const std::string& id) {
  std::string known;
  for (const auto& paper : print_sheet_papers()) {
    if (paper.id == id) return paper;
    known += (known.empty() ? "" : ", ") + paper.id;
  }
  throw Error(ErrorCode::kNotFound, "unknown print sheet '" + id + "'; known sheets: " + known);
}

PrintSheet compose_print_sheet(const Image& photo, const IdPhotoSpec& spec,
                               const PrintSheetPaper& paper, const PrintSheetOptions& options) {
  if (photo.width != spec.width_px || photo.height != spec.height_px ||
      photo.rgb.size() != size_t(photo.width) * photo.height * 3)
    throw Error(ErrorCode::kInvalidArgument, "a print sheet takes the finished " + spec.id +
                                                 " photo (" + std::to_string(spec.width_px) + "x" +
                                                 std::to_string(spec.height_px) + " px), got " +
                                                 std::to_string(photo.width) + "x" +
                                                 std::to_string(photo.height));
  if (options.copies < 1 || options.copies > 100 || options.margin_mm < 0 || options.gap_mm < 0)
    throw Error(ErrorCode::kInvalidArgument,
                "a print sheet needs 1-100 copies and non-negative margins and gaps");
  // The orientation that holds more copies (landscape on a tie: the usual 4R layout).
  Layout best;
  for (bool landscape : {true, false}) {
    const double width = landscape ? paper.long_side_mm : paper.short_side_mm;
    const double height = landscape ? paper.short_side_mm : paper.long_side_mm;
    Layout layout{landscape, fitting(width, spec.width_mm, options),
                  fitting(height, spec.height_mm, options), 0};
    layout.capacity = layout.columns * layout.rows;
    if (layout.capacity > best.capacity) best = layout;
  }
  if (best.capacity == 0)
    throw Error(ErrorCode::kInvalidArgument, "a " + spec.id + " photo does not fit on " + paper.id +
                                                 " paper; choose a larger sheet");
  PrintSheet sheet;
  sheet.copies = std::min(options.copies, best.capacity);
  // The fullest grid for that many copies: fewest empty places, then the fewest rows.
  int columns = best.columns, rows = best.rows, empty = best.capacity;
  for (int r = 1; r <= best.rows; ++r) {
    const int c = (sheet.copies + r - 1) / r;
    if (c <= best.columns && c * r - sheet.copies < empty)
      columns = c, rows = r, empty = c * r - sheet.copies;
  }
  sheet.columns = columns;
  sheet.rows = rows;
  sheet.width_mm = best.landscape ? paper.long_side_mm : paper.short_side_mm;
  sheet.height_mm = best.landscape ? paper.short_side_mm : paper.long_side_mm;
  sheet.dpi = spec.dpi;  // the copies keep their own pixels: no resampling
  const double px_per_mm = spec.dpi / kMillimetresPerInch;
  const int width_px = int(std::lround(sheet.width_mm * px_per_mm));
  const int height_px = int(std::lround(sheet.height_mm * px_per_mm));
  cv::Mat page(height_px, width_px, CV_8UC3, cv::Scalar(255, 255, 255));
  const cv::Mat copy(photo.height, photo.width, CV_8UC3, const_cast<uint8_t*>(photo.rgb.data()));
  const int gap_px = int(std::lround(options.gap_mm * px_per_mm));
  const int block_width = columns * photo.width + (columns - 1) * gap_px;
  const int block_height = rows * photo.height + (rows - 1) * gap_px;
  const int left = (width_px - block_width) / 2, top = (height_px - block_height) / 2;
  std::vector<int> cut_x, cut_y;
  for (int i = 0; i < sheet.copies; ++i) {
    const int x = left + (i % columns) * (photo.width + gap_px);
    const int y = top + (i / columns) * (photo.height + gap_px);
    copy.copyTo(page(cv::Rect(x, y, photo.width, photo.height)));
  }
  for (int c = 0; c < columns; ++c) {
    cut_x.push_back(left + c * (photo.width + gap_px));
    cut_x.push_back(left + c * (photo.width + gap_px) + photo.width - 1);
  }
  for (int r = 0; r < rows; ++r) {
    cut_y.push_back(top + r * (photo.height + gap_px));
    cut_y.push_back(top + r * (photo.height + gap_px) + photo.height - 1);
  }
  // Cut marks in the margins, in line with every photo edge, stopping short of the photos
  // so no mark shows on a cut-out copy.
  const int clearance = std::max(1, int(std::lround(1.0 * px_per_mm)));
  const int thickness = std::max(1, int(std::lround(0.15 * px_per_mm)));
  const cv::Scalar mark(0, 0, 0);
  for (int x : cut_x) {
    if (top - clearance > 0) cv::line(page, {x, 0}, {x, top - clearance}, mark, thickness);
    if (top + block_height + clearance < height_px)
      cv::line(page, {x, top + block_height + clearance}, {x, height_px - 1}, mark, thickness);
  }
  for (int y : cut_y) {
    if (left - clearance > 0) cv::line(page, {0, y}, {left - clearance, y}, mark, thickness);
    if (left + block_width + clearance < width_px)
      cv::line(page, {left + block_width + clearance, y}, {width_px - 1, y}, mark, thickness);
  }
  sheet.image.width = width_px;
  sheet.image.height = height_px;
  sheet.image.rgb.assign(page.datastart, page.dataend);
  return sheet;
}

std::string encode_image_pdf(const Image& image, double width_mm, double height_mm,
                             const std::string& title) {
  if (image.width <= 0 || image.height <= 0 ||
      image.rgb.size() != size_t(image.width) * image.height * 3)
    throw Error(ErrorCode::kInvalidArgument, "cannot put an empty image in a PDF");
  if (!(width_mm > 0 && height_mm > 0 && width_mm <= 5000 && height_mm <= 5000))
    throw Error(ErrorCode::kInvalidArgument, "a PDF page must be 0-5000 mm each way");
  uLongf packed_size = compressBound(uLong(image.rgb.size()));
  std::string packed(packed_size, '\0');
  if (compress2(reinterpret_cast<Bytef*>(packed.data()), &packed_size, image.rgb.data(),
                uLong(image.rgb.size()), 6) != Z_OK)
    throw Error(ErrorCode::kInternal, "compressing the PDF image failed");
  packed.resize(packed_size);
  const std::string width_pt = pdf_number(width_mm / kMillimetresPerInch * kPointsPerInch);
  const std::string height_pt = pdf_number(height_mm / kMillimetresPerInch * kPointsPerInch);
  const std::string content = "q " + width_pt + " 0 0 " + height_pt + " 0 0 cm /Im0 Do Q\n";
  // A PDF string literal: only the title's printable ASCII, with ( ) \ escaped.
  std::string safe_title;
  for (char c : title) {
    if (c < 32 || c > 126) continue;
    if (c == '(' || c == ')' || c == '\\') safe_title += '\\';
    safe_title += c;
  }
  std::vector<std::string> objects = {
      "<< /Type /Catalog /Pages 2 0 R >>",
      "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
      "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 " + width_pt + " " + height_pt +
          "] /Resources << /XObject << /Im0 4 0 R >> >> /Contents 5 0 R >>",
      "<< /Type /XObject /Subtype /Image /Width " + std::to_string(image.width) + " /Height " +
          std::to_string(image.height) +
          " /ColorSpace /DeviceRGB /BitsPerComponent 8 /Filter /FlateDecode /Length " +
          std::to_string(packed.size()) + " >>\nstream\n" + packed + "\nendstream",
      "<< /Length " + std::to_string(content.size()) + " >>\nstream\n" + content + "endstream",
      "<< /Producer (doppel) /Title (" + safe_title + ") >>",
  };
  std::string pdf = "%PDF-1.4\n%\xE2\xE3\xCF\xD3\n";
  std::vector<size_t> offsets;
  for (size_t i = 0; i < objects.size(); ++i) {
    offsets.push_back(pdf.size());
    pdf += std::to_string(i + 1) + " 0 obj\n" + objects[i] + "\nendobj\n";
  }
  const size_t xref = pdf.size();
  pdf += "xref\n0 " + std::to_string(objects.size() + 1) + "\n0000000000 65535 f \n";
  for (size_t offset : offsets) {
    char entry[21];
    std::snprintf(entry, sizeof entry, "%010zu 00000 n \n", offset);
    pdf += entry;
  }
  pdf += "trailer\n<< /Size " + std::to_string(objects.size() + 1) +
         " /Root 1 0 R /Info 6 0 R >>\nstartxref\n" + std::to_string(xref) + "\n%%EOF\n";
  return pdf;
}

}  // namespace doppel
