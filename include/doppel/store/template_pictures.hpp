// The pictures the studio drew for built-in templates (a template with a `generate` section),
// one per template, model and drawing settings, kept as blobs: the template gallery shows them,
// and a shoot on that model paints into the same bytes. They belong to the installation, not to
// an account (they show no one's face); a new default model has none until they are drawn.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "doppel/store/database.hpp"

namespace doppel::store {

struct DrawnTemplatePicture {
  std::string template_id;
  std::string model_key;        // the model's registry id ("builtin" for the tiny model)
  std::string settings_sha256;  // studio's drawn_template_settings_sha256
  std::string blob_sha256;      // the PNG, with its A1111 parameters
  int64_t created_at = 0;
};

// The pictures drawn with `model_key`, by template.
std::vector<DrawnTemplatePicture> list_drawn_template_pictures(Database& database,
                                                               const std::string& model_key);

// Records a picture (fills created_at); the same template, model and settings again replace the
// blob. Throws kInvalidArgument for an empty id, model key, settings digest or blob digest.
DrawnTemplatePicture put_drawn_template_picture(Database& database, DrawnTemplatePicture picture);

}  // namespace doppel::store
