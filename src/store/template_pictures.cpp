#include "doppel/store/template_pictures.hpp"

#include "doppel/core/error.hpp"
#include "doppel/store/repository.hpp"

namespace doppel::store {

std::vector<DrawnTemplatePicture> list_drawn_template_pictures(Database& database,
                                                               const std::string& model_key) {
  const SqlResult result = database.execute(
      "SELECT template_id, model_key, settings_sha256, blob_sha256, created_at FROM "
      "template_pictures WHERE model_key = ? ORDER BY template_id, created_at",
      {model_key});
  std::vector<DrawnTemplatePicture> pictures;
  for (const SqlRow& row : result.rows)
    pictures.push_back({row.text(0), row.text(1), row.text(2), row.text(3), row.integer(4)});
  return pictures;
}

DrawnTemplatePicture put_drawn_template_picture(Database& database, DrawnTemplatePicture picture) {
  for (const auto& [value, what] :
       {std::pair{&picture.template_id, "template id"}, std::pair{&picture.model_key, "model key"},
        std::pair{&picture.settings_sha256, "settings digest"},
        std::pair{&picture.blob_sha256, "blob digest"}})
    if (value->empty())
      throw Error(ErrorCode::kInvalidArgument,
                  std::string("a drawn template picture's ") + what + " is empty");
  picture.created_at = unix_millis_now();
  database.transaction([&] {
    database.execute(
        "DELETE FROM template_pictures WHERE template_id = ? AND model_key = ? AND "
        "settings_sha256 = ?",
        {picture.template_id, picture.model_key, picture.settings_sha256});
    database.execute(
        "INSERT INTO template_pictures (template_id, model_key, settings_sha256, blob_sha256, "
        "created_at) VALUES (?, ?, ?, ?, ?)",
        {picture.template_id, picture.model_key, picture.settings_sha256, picture.blob_sha256,
         picture.created_at});
  });
  return picture;
}

}  // namespace doppel::store
