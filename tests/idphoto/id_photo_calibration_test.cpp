// Prints the measurements behind the checks for labelled photos (run by hand with
// --gtest_also_run_disabled_tests to see where the limits sit).
#include <cstdio>

#include "doppel/idphoto/id_photo_check.hpp"
#include "doppel/idphoto/id_photo_maker.hpp"
#include "idphoto/id_photo_test_support.hpp"

namespace doppel {
namespace {

TEST(IdPhotoCalibration, DISABLED_PrintMeasures) {
  DOPPEL_REQUIRE_LANDMARK_MODEL();
  const IdPhotoSpec& spec = find_id_photo_spec(
      built_in_id_photo_specs(),
      std::getenv("IDPHOTO_SPEC") ? std::getenv("IDPHOTO_SPEC") : "schengen-visa");
  const char* env = std::getenv("IDPHOTO_FILES");
  std::vector<std::string> files;
  std::string all = env ? env : "";
  for (size_t at = 0; at < all.size();) {
    size_t end = all.find(',', at);
    if (end == std::string::npos) end = all.size();
    files.push_back(all.substr(at, end - at));
    at = end + 1;
  }
  for (const auto& file : files) {
    const Image photo = test::test_photo(file);
    const IdPhotoVerdict v = check_id_photo(photo, spec, test::id_photo_detector());
    const auto& m = v.measures;
    std::printf(
        "%-60s faces %d yaw %6.1f pitch %6.1f roll %6.1f ear %.3f light %6.1f sharp %7.1f bg %.3f "
        "spread %.1f uneven %.1f\n",
        file.c_str(), m.faces, m.yaw_degrees, m.pitch_degrees, m.roll_degrees, m.eye_openness,
        m.lighting_difference, m.sharpness, m.background_fraction, m.background_spread,
        m.background_unevenness);
    if (std::getenv("IDPHOTO_MATTE") && m.faces == 1) {
      const PersonMatte matte = estimate_person_matte(photo, m.face);
      Image view{matte.width, matte.height, {}};
      for (float a : matte.alpha) view.rgb.insert(view.rgb.end(), 3, uint8_t(a * 255));
      write_png("/tmp/idp/matte_" + file + ".png", view);
    }
    if (std::getenv("IDPHOTO_MAKE")) {
      const IdPhotoResult r = make_id_photo(test::id_photo_detector(), photo, spec);
      std::printf("   made: compliant %d enlarge %.2f\n", r.verdict.compliant, r.enlargement);
      for (const auto& c : r.verdict.checks)
        if (!c.pass) std::printf("     FAIL %s: %s\n", c.id.c_str(), c.message.c_str());
      if (!r.image.rgb.empty()) write_png("/tmp/idp/" + file + ".png", r.image);
      const IdPhotoVerdict again = check_id_photo(r.image, spec, test::id_photo_detector());
      std::printf("   recheck: compliant %d head %.1f eye %.1f\n", again.compliant,
                  again.measures.head_height_mm, again.measures.eye_line_mm);
      for (const auto& c : again.checks)
        if (!c.pass) std::printf("     FAIL %s: %s\n", c.id.c_str(), c.message.c_str());
    }
  }
}

}  // namespace
}  // namespace doppel
