#include "doppel/idphoto/print_sheet.hpp"

#include <gtest/gtest.h>
#include <zlib.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <regex>

#include "doppel/core/atomic_file.hpp"
#include "doppel/core/error.hpp"

namespace doppel {
namespace {

Image photo_of(const IdPhotoSpec& spec, uint8_t shade) {
  Image image{spec.width_px, spec.height_px,
              std::vector<uint8_t>(size_t(spec.width_px) * spec.height_px * 3, shade)};
  image.rgb[0] = 0, image.rgb[1] = 200, image.rgb[2] = 0;  // a marked corner
  return image;
}

const uint8_t* pixel(const Image& image, int x, int y) {
  return image.rgb.data() + (size_t(y) * image.width + x) * 3;
}

TEST(PrintSheet, EightOneInchCopiesOnA4rSheetWithCutMarks) {
  const IdPhotoSpec& spec = find_id_photo_spec(built_in_id_photo_specs(), "one-inch");
  const Image photo = photo_of(spec, 90);
  const PrintSheet sheet = compose_print_sheet(photo, spec, find_print_sheet_paper("4r"));
  EXPECT_EQ(sheet.copies, 8);
  EXPECT_EQ(sheet.columns, 4);
  EXPECT_EQ(sheet.rows, 2);
  EXPECT_DOUBLE_EQ(sheet.width_mm, 152.4);  // landscape 6 x 4 in
  EXPECT_DOUBLE_EQ(sheet.dpi, 300);
  EXPECT_EQ(sheet.image.width, 1800);
  EXPECT_EQ(sheet.image.height, 1200);
  // Every copy is the photo pixel for pixel: find the marked corners.
  int corners = 0;
  for (int y = 0; y < sheet.image.height; ++y)
    for (int x = 0; x < sheet.image.width; ++x) {
      const uint8_t* p = pixel(sheet.image, x, y);
      if (p[0] == 0 && p[1] == 200 && p[2] == 0) {
        ++corners;
        for (int dy = 0; dy < photo.height; dy += 37)
          for (int dx = 1; dx < photo.width; dx += 29)
            ASSERT_EQ(pixel(sheet.image, x + dx, y + dy)[0], 90);
      }
    }
  EXPECT_EQ(corners, 8);
  // Cut marks: black in the top margin above the first column's left edge, none on a photo.
  const int left = (1800 - (4 * 295 + 3 * 35)) / 2;
  EXPECT_EQ(pixel(sheet.image, left, 5)[0], 0);
  EXPECT_EQ(pixel(sheet.image, left + 100, 5)[0], 255);
}

TEST(PrintSheet, FitsWhatThePaperHoldsAndRefusesWhatItCannot) {
  const auto& specs = built_in_id_photo_specs();
  const IdPhotoSpec& us = find_id_photo_spec(specs, "us-passport");
  PrintSheetOptions many;
  many.copies = 20;
  const PrintSheet sheet =
      compose_print_sheet(photo_of(us, 100), us, find_print_sheet_paper("4r"), many);
  EXPECT_EQ(sheet.copies, 2);  // two 2x2 in photos on 4x6 in with margins
  const PrintSheet a4 =
      compose_print_sheet(photo_of(us, 100), us, find_print_sheet_paper("a4"), many);
  EXPECT_EQ(a4.copies, 15);
  EXPECT_THROW(compose_print_sheet(photo_of(us, 100), find_id_photo_spec(specs, "one-inch"),
                                   find_print_sheet_paper("4r")),
               Error);  // not that spec's size
  EXPECT_THROW(find_print_sheet_paper("8r"), Error);
  PrintSheetOptions none;
  none.copies = 0;
  EXPECT_THROW(compose_print_sheet(photo_of(us, 100), us, find_print_sheet_paper("4r"), none),
               Error);
}

// Reads the PDF as a reader does: the cross-reference table from startxref, each object
// at its recorded offset, the image stream at its /Length, inflated to the pixels.
TEST(PrintSheet, ThePdfParsesAndHoldsTheSheetLossless) {
  const IdPhotoSpec& spec = find_id_photo_spec(built_in_id_photo_specs(), "one-inch");
  const PrintSheet sheet =
      compose_print_sheet(photo_of(spec, 60), spec, find_print_sheet_paper("4r"));
  const std::string pdf = encode_image_pdf(sheet.image, sheet.width_mm, sheet.height_mm, "a (b)");
  ASSERT_EQ(pdf.rfind("%PDF-1.4", 0), 0u);
  ASSERT_EQ(pdf.substr(pdf.size() - 6), "%%EOF\n");
  const size_t startxref = pdf.rfind("startxref\n");
  ASSERT_NE(startxref, std::string::npos);
  const size_t xref = std::stoul(pdf.substr(startxref + 10));
  ASSERT_EQ(pdf.compare(xref, 5, "xref\n"), 0);
  std::smatch header;
  const std::string table = pdf.substr(xref);
  ASSERT_TRUE(std::regex_search(table, header, std::regex("^xref\n0 (\\d+)\n")));
  const int count = std::stoi(header[1]);
  EXPECT_EQ(count, 7);
  std::map<int, size_t> offsets;
  for (int i = 1; i < count; ++i) {
    const std::string entry = table.substr(header.length() + size_t(i) * 20, 20);
    ASSERT_EQ(entry.substr(10), " 00000 n \n") << entry;
    offsets[i] = std::stoul(entry.substr(0, 10));
    ASSERT_EQ(pdf.compare(offsets[i], std::to_string(i).size() + 6, std::to_string(i) + " 0 obj"),
              0)
        << "object " << i;
  }
  // The page is 6 x 4 inches in points.
  EXPECT_NE(pdf.find("/MediaBox [0 0 432.00 288.00]"), std::string::npos);
  EXPECT_NE(pdf.find("/Title (a \\(b\\))"), std::string::npos);
  // The image object: its stream, inflated, is the sheet's pixels.
  const std::string image_object = pdf.substr(offsets[4], offsets[5] - offsets[4]);
  std::smatch length;
  ASSERT_TRUE(std::regex_search(image_object, length, std::regex("/Length (\\d+)")));
  const size_t stream = image_object.find("stream\n") + 7;
  const size_t packed_size = std::stoul(length[1]);
  ASSERT_EQ(image_object.compare(stream + packed_size, 10, "\nendstream"), 0);
  std::vector<uint8_t> pixels(sheet.image.rgb.size());
  uLongf unpacked = pixels.size();
  ASSERT_EQ(uncompress(pixels.data(), &unpacked,
                       reinterpret_cast<const Bytef*>(image_object.data() + stream), packed_size),
            Z_OK);
  EXPECT_EQ(unpacked, pixels.size());
  EXPECT_TRUE(pixels == sheet.image.rgb);
}

// qpdf (scripts/install.sh installs it) checks the file as a PDF library does.
TEST(PrintSheet, QpdfFindsNoFaultInThePdf) {
  if (std::system("qpdf --version >/dev/null 2>&1") != 0) GTEST_SKIP() << "qpdf is not installed";
  const IdPhotoSpec& spec = find_id_photo_spec(built_in_id_photo_specs(), "two-inch");
  const PrintSheet sheet =
      compose_print_sheet(photo_of(spec, 60), spec, find_print_sheet_paper("4r"));
  const auto file = std::filesystem::temp_directory_path() / "doppel_print_sheet_test.pdf";
  write_file_atomically(file, encode_image_pdf(sheet.image, sheet.width_mm, sheet.height_mm));
  const std::string command = "qpdf --check '" + file.string() + "' >/dev/null 2>&1";
  EXPECT_EQ(std::system(command.c_str()), 0);
  std::filesystem::remove(file);
}

}  // namespace
}  // namespace doppel
