// Images: records, PNGs, favourites, "again", variations, upscale and inpainting.
#include <sodium.h>

#include "doppel/studio/template_shot.hpp"
#include "server/api_state.hpp"

namespace doppel::server {

void ApiServer::State::subject_images(Call& call) {
  const store::Subject subject = subject_of(call, 1);
  std::vector<store::Image> images;
  for (const store::Shoot& shoot : repository->list_shoots(call.account_id(), subject.id)) {
    auto some = repository->list_images(call.account_id(), shoot.id);
    images.insert(images.end(), some.begin(), some.end());
  }
  rank_images(images);
  json list = json::array();
  for (const store::Image& image : images) list.push_back(image_json(image));
  send_json(call.response, 200, {{"images", list}});
}

void ApiServer::State::get_image(Call& call) {
  const auto image = repository->get_image(call.account_id(), call.id(1, "image"));
  if (!image) not_found("image");
  send_json(call.response, 200, image_json(*image));
}

void ApiServer::State::image_png(Call& call) {
  const auto image = repository->get_image(call.account_id(), call.id(1, "image"));
  if (!image) not_found("image");
  // Named as in the shoot's zip: "<subject>-<style>-<rank in its shoot>.png".
  std::string name = "doppel-" + image->id + ".png";
  if (const auto shoot = repository->get_shoot(call.account_id(), image->shoot_id)) {
    const auto subject = repository->get_subject(call.account_id(), shoot->subject_id);
    const auto ranked = repository->list_images(call.account_id(), shoot->id);
    const auto at = std::find_if(ranked.begin(), ranked.end(),
                                 [&](const store::Image& other) { return other.id == image->id; });
    const json recipe = parse_stored_json(image->recipe_json);
    const json style = recipe.is_object() ? recipe.value("style", json()) : json();
    const size_t digits = std::max<size_t>(2, std::to_string(ranked.size()).size());
    name = portrait_file_name(subject ? subject->name : "portrait",
                              style.is_string() ? style.get<std::string>() : "",
                              static_cast<size_t>(at - ranked.begin()) + 1, digits);
  }
  call.response.set_header("Content-Disposition", attachment_header(name));
  call.response.set_header("X-Content-Type-Options", "nosniff");
  call.response.set_content(blobs->get(image->blob_sha256), "image/png");
}

void ApiServer::State::favourite_image(Call& call) {
  const std::string id = call.id(1, "image");
  const json& body = call.body;
  const bool favourite = boolean_field(body, "favourite", true, false);
  if (!repository->set_image_favourite(call.account_id(), id, favourite)) not_found("image");
  send_json(call.response, 200, image_json(*repository->get_image(call.account_id(), id)));
}

void ApiServer::State::delete_image(Call& call) {
  const store::Deletion deletion = repository->delete_image(call.account_id(), call.id(1, "image"));
  if (!deletion.found) not_found("image");
  remove_blobs(deletion);
  send_json(call.response, 200, {{"deleted", true}});
}

void ApiServer::State::again(Call& call) {
  const auto image = repository->get_image(call.account_id(), call.id(1, "image"));
  if (!image) not_found("image");
  const json& body = call.body;
  const auto shoot = repository->get_shoot(call.account_id(), image->shoot_id);
  const auto subject =
      shoot ? repository->get_subject(call.account_id(), shoot->subject_id) : std::nullopt;
  if (!subject) not_found("image");
  // The recipe comes from the store (never from the client), so its LoRA paths are ours.
  const json recipe = parse_stored_json(image->recipe_json);
  // A template shot repaints the same template picture (the recipe names it by its digest).
  const Shot shot = is_template_recipe(recipe) ? template_shot_from_recipe(recipe).shot
                                               : shot_from_recipe(recipe);
  const store::Shoot again_shoot = create_shoot_with_jobs(
      call, *subject, {shot}, string_field(body, "idempotency_key", false, 100),
      model_path_of_recipe(recipe));
  send_json(call.response, 202, shoot_json(again_shoot));
}

void ApiServer::State::variations(Call& call) {
  const auto image = repository->get_image(call.account_id(), call.id(1, "image"));
  if (!image) not_found("image");
  const json& body = call.body;
  const int count = static_cast<int>(integer_field(body, "count", 1, 20, 4));
  const int first = static_cast<int>(integer_field(body, "first", 1, 1'000'000, 1));
  const auto shoot = repository->get_shoot(call.account_id(), image->shoot_id);
  const auto subject =
      shoot ? repository->get_subject(call.account_id(), shoot->subject_id) : std::nullopt;
  if (!subject) not_found("image");
  const json recipe = parse_stored_json(image->recipe_json);
  const std::vector<Shot> shots = is_template_recipe(recipe)
                                      ? plan_template_variations(recipe, count, first)
                                      : plan_variations(recipe, count, first);
  const store::Shoot variation_shoot = create_shoot_with_jobs(
      call, *subject, shots, string_field(body, "idempotency_key", false, 100),
      model_path_of_recipe(recipe));
  send_json(call.response, 202, shoot_json(variation_shoot));
}

// The image, its shoot's subject and its recipe (from the store, never from the client, so its
// LoRA paths are ours), for the routes that make new images from it.
namespace {

// A new version of a portrait records its source, so the shoots list can say what it is
// ("Upscaled from a Film noir portrait") and link it to the portrait it was made from.
json made_from(json recipe, const char* edit, const std::string& image_id) {
  recipe["made_from"] = {{"edit", edit}, {"image_id", image_id}};
  return recipe;
}

}  // namespace

ApiServer::State::ImageSource ApiServer::State::image_source(Call& call) {
  const auto image = repository->get_image(call.account_id(), call.id(1, "image"));
  if (!image) not_found("image");
  const auto shoot = repository->get_shoot(call.account_id(), image->shoot_id);
  const auto subject =
      shoot ? repository->get_subject(call.account_id(), shoot->subject_id) : std::nullopt;
  if (!subject) not_found("image");
  json recipe = parse_stored_json(image->recipe_json);
  // A template portrait's recipe is its face pass's (a crop's size), not the whole picture's.
  if (is_template_recipe(recipe))
    throw HttpError(409, "conflict",
                    "this portrait was made from a template; upscaling, fixing the face and "
                    "repainting an area do not take template portraits yet — use 'again' or "
                    "'variations' instead");
  return {*image, *subject, std::move(recipe)};
}

void ApiServer::State::upscale_image(Call& call) {
  const ImageSource source = image_source(call);
  const json& body = call.body;
  // A1111's hires fix of the same recipe and seed: the same portrait, larger and sharper.
  const json recipe =
      made_from(upscaled_recipe(source.recipe, number_field(body, "scale", 1.25, 4, 2.0),
                                number_field(body, "strength", 0.05, 1, 0.45)),
                "upscale", source.image.id);
  const store::Shoot shoot = create_shoot_with_jobs(
      call, source.subject, {shot_from_recipe(recipe)},
      string_field(body, "idempotency_key", false, 100), model_path_of_recipe(recipe));
  send_json(call.response, 202, shoot_json(shoot));
}

void ApiServer::State::fix_face(Call& call) {
  const ImageSource source = image_source(call);
  const json& body = call.body;
  // The same recipe and seed with the face-detail pass (ADetailer) on the largest face.
  const json recipe =
      made_from(face_fixed_recipe(source.recipe, number_field(body, "strength", 0.05, 1, 0.4)),
                "face_fix", source.image.id);
  const store::Shoot shoot = create_shoot_with_jobs(
      call, source.subject, {shot_from_recipe(recipe)},
      string_field(body, "idempotency_key", false, 100), model_path_of_recipe(recipe));
  send_json(call.response, 202, shoot_json(shoot));
}

void ApiServer::State::inpaint_image(Call& call) {
  const ImageSource source = image_source(call);
  const json& body = call.body;
  // The brushed mask: a PNG (white = paint again), as base64 or a data: URL.
  std::string text = *string_field(body, "mask", true, 8 << 20);
  if (text.starts_with("data:")) {
    const size_t comma = text.find(',');
    if (comma == std::string::npos || text.find(";base64") > comma)
      bad_request("field 'mask' must be a base64 PNG or a data:image/png;base64 URL");
    text = text.substr(comma + 1);
  }
  std::string png(text.size(), '\0');
  size_t length = 0;
  if (sodium_base642bin(reinterpret_cast<unsigned char*>(png.data()), png.size(), text.data(),
                        text.size(), "\r\n ", &length, nullptr,
                        sodium_base64_VARIANT_ORIGINAL) != 0)
    bad_request("field 'mask' is not base64; send the brushed area as a PNG in base64");
  png.resize(length);
  Image mask;
  try {
    const ImageHeader header = sniff_image_header(png, "the mask");
    if (header.format != ImageFormat::kPng ||
        static_cast<int64_t>(header.width) * header.height > static_cast<int64_t>(2048) * 2048)
      bad_request("field 'mask' must be a PNG of at most 2048x2048 pixels");
    mask = decode_image(png, {}, "the mask");
  } catch (const Error& error) {
    bad_request(std::string("field 'mask': ") + error.what());
  }
  const ImageHeader portrait = sniff_image_header(blobs->get(source.image.blob_sha256), "image");
  const json recipe = made_from(
      inpaint_recipe(source.recipe, source.image.blob_sha256, portrait.width, portrait.height, mask,
                     number_field(body, "strength", 0.05, 1, 0.75), prompt_extra_of(body)),
      "inpaint", source.image.id);
  const store::Shoot shoot = create_shoot_with_jobs(
      call, source.subject, {shot_from_recipe(recipe)},
      string_field(body, "idempotency_key", false, 100), model_path_of_recipe(recipe));
  send_json(call.response, 202, shoot_json(shoot));
}

}  // namespace doppel::server
