// Identity verification and the likeness calibration on the developer face
// set, through the product's own path (read with EXIF, detect, align, embed).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include "doppel/face/subject_profile.hpp"
#include "face_test_support.hpp"

namespace doppel::test {
namespace {

struct LabelledFace {
  std::string file, identity;
  FaceDescriptor descriptor;
};

// The most confident face of each photo, as PhotoIntake and `doppel face` see it.
std::vector<LabelledFace> embed_photos(const std::vector<FaceLabel>& labels) {
  std::vector<LabelledFace> faces(labels.size());
  parallel_analyze(product_analyzer(), labels.size(), [&](FaceAnalyzer& analyzer, size_t i) {
    const std::vector<AnalyzedFace> found =
        analyzer.analyze(analyzer.read(faces_dir() / labels[i].file));
    faces[i] = {labels[i].file, labels[i].identity,
                found.empty() ? FaceDescriptor{} : found.front().descriptor};
  });
  return faces;
}

// Area under the ROC curve of "distance below threshold means same person":
// the probability that a random same-person pair is closer than a random
// different-person pair (ties count half).
double roc_auc(std::vector<double> same, std::vector<double> different) {
  std::sort(different.begin(), different.end());
  double wins = 0;
  for (double s : same) {
    const auto lower = std::lower_bound(different.begin(), different.end(), s);
    const auto upper = std::upper_bound(different.begin(), different.end(), s);
    wins += double(different.end() - upper) + 0.5 * double(upper - lower);
  }
  return wins / (double(same.size()) * double(different.size()));
}

// Verification: every pair of the clean set; fails below ROC AUC 0.9995.
void check_verification(const std::vector<LabelledFace>& faces) {
  std::vector<double> same, different;
  for (size_t a = 0; a < faces.size(); ++a) {
    ASSERT_FALSE(faces[a].descriptor.empty()) << "no face found in " << faces[a].file;
    for (size_t b = a + 1; b < faces.size(); ++b) {
      const double d = descriptor_distance(faces[a].descriptor, faces[b].descriptor);
      (faces[a].identity == faces[b].identity ? same : different).push_back(d);
    }
  }
  EXPECT_EQ(same.size(), 191u);
  EXPECT_EQ(different.size(), 4274u);
  const double auc = roc_auc(same, different);
  const double threshold = 0.6;
  const double true_accepts =
      double(std::count_if(same.begin(), same.end(), [&](double d) { return d < threshold; }));
  const double false_accepts = double(
      std::count_if(different.begin(), different.end(), [&](double d) { return d < threshold; }));
  const double accuracy = (true_accepts + double(different.size()) - false_accepts) /
                          double(same.size() + different.size());
  const double far = false_accepts / double(different.size());
  const double frr = 1 - true_accepts / double(same.size());
  std::cout << "[ verify   ] " << same.size() << " same / " << different.size()
            << " different pairs: ROC AUC " << auc << "; at distance " << threshold << ": accuracy "
            << accuracy << ", false accepts " << far << ", false rejects " << frr << "\n";
  EXPECT_GE(auc, 0.9995);
  EXPECT_GE(accuracy, 0.995);
  EXPECT_LE(far, 0.005);
}

// The likeness mapping (LikenessCalibration defaults) read against the set:
// leave-one-out profiles for genuine photos, whole-person profiles for
// impostors, and the stylised (cartoon-filtered) portrait of a known person.
void check_likeness_calibration(const std::vector<LabelledFace>& faces,
                                const FaceDescriptor& stylised) {
  std::map<std::string, std::vector<size_t>> by_person;
  for (size_t i = 0; i < faces.size(); ++i) by_person[faces[i].identity].push_back(i);
  const LikenessCalibration calibration;
  std::vector<double> genuine, impostor;
  for (const auto& [person, members] : by_person) {
    if (members.size() < 3) continue;  // a profile needs a few photos
    for (size_t held_out : members) {
      std::vector<FaceDescriptor> others;
      for (size_t j : members)
        if (j != held_out) others.push_back(faces[j].descriptor);
      genuine.push_back(
          SubjectProfile::from_descriptors(others).distance(faces[held_out].descriptor));
    }
    std::vector<FaceDescriptor> all;
    for (size_t j : members) all.push_back(faces[j].descriptor);
    const SubjectProfile profile = SubjectProfile::from_descriptors(all);
    for (size_t i = 0; i < faces.size(); ++i)
      if (faces[i].identity != person) impostor.push_back(profile.distance(faces[i].descriptor));
  }
  // Against Mark Zuckerberg's other photos (not img14, which it was made from).
  std::vector<FaceDescriptor> zuckerberg;
  for (size_t j : by_person.at("mark_zuckerberg"))
    if (faces[j].file != "mark_zuckerberg__deepface_img14.jpg")
      zuckerberg.push_back(faces[j].descriptor);
  const double stylised_distance = SubjectProfile::from_descriptors(zuckerberg).distance(stylised);
  const double stylised_score = likeness_score(stylised_distance, calibration);

  std::sort(genuine.begin(), genuine.end());
  std::sort(impostor.begin(), impostor.end());
  const auto quantile = [](const std::vector<double>& v, double q) {
    return v[std::min(v.size() - 1, size_t(q * double(v.size())))];
  };
  const auto share_at_least = [&](const std::vector<double>& distances, double score) {
    return double(
               std::count_if(distances.begin(), distances.end(),
                             [&](double d) { return likeness_score(d, calibration) >= score; })) /
           double(distances.size());
  };
  std::cout << "[ likeness ] genuine (leave-one-out) profile distance: median "
            << quantile(genuine, 0.5) << ", 95% " << quantile(genuine, 0.95) << ", max "
            << genuine.back() << " (" << genuine.size() << ")\n"
            << "[ likeness ] impostor profile distance: min " << impostor.front() << ", 1% "
            << quantile(impostor, 0.01) << ", median " << quantile(impostor, 0.5) << " ("
            << impostor.size() << ")\n"
            << "[ likeness ] stylised portrait: distance " << stylised_distance << ", likeness "
            << stylised_score << " (" << likeness_label(stylised_score) << ")\n"
            << "[ likeness ] genuine >= same-person band: "
            << share_at_least(genuine, calibration.same_person_score)
            << "; impostors >= same-person band: "
            << share_at_least(impostor, calibration.same_person_score)
            << ", >= likely: " << share_at_least(impostor, calibration.likely_score)
            << ", below uncertain (different person): "
            << 1 - share_at_least(impostor, calibration.uncertain_score) << "\n";
  EXPECT_GE(stylised_score, calibration.likely_score);
  EXPECT_GE(share_at_least(genuine, calibration.same_person_score), 0.95);
  EXPECT_LE(share_at_least(impostor, calibration.same_person_score), 0.002);
  EXPECT_LE(share_at_least(impostor, calibration.likely_score), 0.1);
  EXPECT_GE(1 - share_at_least(impostor, calibration.uncertain_score), 0.5);
}

// Genuine (leave-one-out) and impostor profile distances among the people in `people` only.
struct LikenessDistances {
  std::vector<double> genuine, impostor;
};
LikenessDistances likeness_distances(const std::vector<LabelledFace>& faces,
                                     const std::set<std::string>& people) {
  std::map<std::string, std::vector<size_t>> by_person;
  for (size_t i = 0; i < faces.size(); ++i)
    if (people.count(faces[i].identity)) by_person[faces[i].identity].push_back(i);
  LikenessDistances distances;
  for (const auto& [person, members] : by_person) {
    if (members.size() < 3) continue;
    std::vector<FaceDescriptor> all;
    for (size_t held_out : members) {
      std::vector<FaceDescriptor> others;
      for (size_t j : members)
        if (j != held_out) others.push_back(faces[j].descriptor);
      distances.genuine.push_back(
          SubjectProfile::from_descriptors(others).distance(faces[held_out].descriptor));
      all.push_back(faces[held_out].descriptor);
    }
    const SubjectProfile profile = SubjectProfile::from_descriptors(all);
    for (const auto& [other, other_members] : by_person)
      if (other != person)
        for (size_t j : other_members)
          distances.impostor.push_back(profile.distance(faces[j].descriptor));
  }
  return distances;
}

double quantile_of(std::vector<double> values, double q) {
  std::sort(values.begin(), values.end());
  return values[std::min(values.size() - 1, size_t(q * double(values.size())))];
}

// A calibration fitted to distances: score 85 ("same person") at the genuine 95th percentile,
// score 20 (below: "different person") at the impostors' median.
LikenessCalibration fit_calibration(const LikenessDistances& distances) {
  const double same = quantile_of(distances.genuine, 0.95);
  const double different = quantile_of(distances.impostor, 0.5);
  LikenessCalibration fitted;
  fitted.width = (different - same) / (std::log(85.0 / 15.0) + std::log(80.0 / 20.0));
  fitted.midpoint_distance = same + fitted.width * std::log(85.0 / 15.0);
  return fitted;
}

// Fitted on half the identities, the calibration must hold on the other half (people it never
// saw); the shipped defaults are reported beside it.
void check_calibration_on_held_out_people(const std::vector<LabelledFace>& faces) {
  std::set<std::string> identities;
  for (const LabelledFace& face : faces) identities.insert(face.identity);
  std::set<std::string> fit_people, held_out_people;
  size_t index = 0;
  for (const std::string& identity : identities)
    (index++ % 2 == 0 ? fit_people : held_out_people).insert(identity);
  const LikenessDistances fit = likeness_distances(faces, fit_people);
  const LikenessDistances held_out = likeness_distances(faces, held_out_people);
  const LikenessCalibration fitted = fit_calibration(fit);
  const LikenessCalibration shipped;
  auto share_at_least = [](const std::vector<double>& distances, double score,
                           const LikenessCalibration& calibration) {
    return double(
               std::count_if(distances.begin(), distances.end(),
                             [&](double d) { return likeness_score(d, calibration) >= score; })) /
           double(distances.size());
  };
  auto report = [&](const char* name, const LikenessDistances& d, const LikenessCalibration& c) {
    std::cout << "[ calibrate] " << name << ": genuine >= same-person "
              << share_at_least(d.genuine, 85, c) << ", impostors >= same-person "
              << share_at_least(d.impostor, 85, c) << ", impostors >= likely "
              << share_at_least(d.impostor, 50, c) << " (" << d.genuine.size() << " genuine, "
              << d.impostor.size() << " impostor)\n";
  };
  std::cout << "[ calibrate] fitted on " << fit_people.size() << " people: midpoint "
            << fitted.midpoint_distance << ", width " << fitted.width << " (shipped "
            << shipped.midpoint_distance << ", " << shipped.width << ")\n";
  report("fit people, fitted", fit, fitted);
  report("held-out people, fitted", held_out, fitted);
  report("held-out people, shipped", held_out, shipped);
  ASSERT_GE(held_out.genuine.size(), 20u);
  EXPECT_GE(share_at_least(held_out.genuine, 85, fitted), 0.9);
  EXPECT_LE(share_at_least(held_out.impostor, 85, fitted), 0.01);
  EXPECT_LE(share_at_least(held_out.impostor, 50, fitted), 0.15);
  // The shipped values are not far from what the data fits.
  EXPECT_NEAR(fitted.midpoint_distance, shipped.midpoint_distance, 0.1);
}

// One sweep of the clean set (95 photos) feeds every check.
TEST(FaceVerification, CleanSetPairsAndLikenessCalibration) {
  DOPPEL_REQUIRE_PATH(faces_dir() / "labels.csv");
  DOPPEL_REQUIRE_FACE_MODELS();
  std::vector<FaceLabel> labels = clean_single_identity_photos();
  ASSERT_EQ(labels.size(), 95u);
  labels.push_back({"mark_zuckerberg__synthetic_stylized_img14.jpg", "stylised", "1", ""});
  std::vector<LabelledFace> faces = embed_photos(labels);
  const FaceDescriptor stylised = faces.back().descriptor;
  faces.pop_back();
  ASSERT_FALSE(stylised.empty());
  check_verification(faces);
  check_likeness_calibration(faces, stylised);
  check_calibration_on_held_out_people(faces);
}

}  // namespace
}  // namespace doppel::test
