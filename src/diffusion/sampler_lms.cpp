// Linear multistep (order 4) on the probability-flow ODE dx/dsigma =
// (x - D(x; sigma)) / sigma, as k-diffusion's sample_lms and diffusers'
// LMSDiscreteScheduler: the step is sum_j c_j d_{i-j}, where c_j integrates the
// Lagrange basis polynomial of the past sigmas over [sigma_i, sigma_{i+1}]
// (the Adams-Bashforth construction on a non-uniform grid).
#include <cmath>

#include "diffusion/sampler_internal.hpp"

namespace doppel::sampling {
namespace {

constexpr int64_t kLmsOrder = 4;

// QUADPACK's 21-point Gauss-Kronrod rule (qk21), which scipy's quad applies
// first; the integrand is a polynomial of degree <= 3, so its error estimate
// always meets quad's tolerance after this single evaluation.
constexpr double kKronrodNodes[11] = {
    0.995657163025808080735527280689003, 0.973906528517171720077964012084452,
    0.930157491355708226001207180059508, 0.865063366688984510732096688423493,
    0.780817726586416897063717578345042, 0.679409568299024406234327365114874,
    0.562757134668604683339000099272694, 0.433395394129247190799265943165784,
    0.294392862701460198131126603103866, 0.148874338981631210884826001129720,
    0.000000000000000000000000000000000};
constexpr double kKronrodWeights[11] = {
    0.011694638867371874278064396062192, 0.032558162307964727478818972459390,
    0.054755896574351996031381300244580, 0.075039674810919952767043140916190,
    0.093125454583697605535065465083366, 0.109387158802297641899210590325805,
    0.123491976262065851077208626931708, 0.134709217311473325928054001771707,
    0.142775938577060080797094273138717, 0.147739104901338491374841515972068,
    0.149445554002916905664936468389821};

}  // namespace

double lms_coefficient(const std::vector<double>& sigmas, int64_t order, int64_t t,
                       int64_t current_order) {
  auto sigma_at = [&](int64_t index) {
    return static_cast<float>(sigmas.at(static_cast<size_t>(index)));
  };
  // diffusers evaluates the basis polynomial on float32 0-d tensors.
  auto basis = [&](double tau) {
    float product = 1.0f;
    const auto tau32 = static_cast<float>(tau);
    for (int64_t k = 0; k < order; ++k) {
      if (k == current_order) continue;
      product *= (tau32 - sigma_at(t - k)) / (sigma_at(t - current_order) - sigma_at(t - k));
    }
    return static_cast<double>(product);
  };
  const double lower = sigma_at(t);
  const double upper = sigma_at(t + 1);
  const double center = 0.5 * (lower + upper);
  const double half_length = 0.5 * (upper - lower);
  double sum = kKronrodWeights[10] * basis(center);
  for (int j = 0; j < 5; ++j) {  // the Gauss nodes (odd indices), then the Kronrod ones
    const int index = 2 * j + 1;
    const double offset = half_length * kKronrodNodes[index];
    sum += kKronrodWeights[index] * (basis(center - offset) + basis(center + offset));
  }
  for (int j = 0; j < 5; ++j) {
    const int index = 2 * j;
    const double offset = half_length * kKronrodNodes[index];
    sum += kKronrodWeights[index] * (basis(center - offset) + basis(center + offset));
  }
  return sum * half_length;
}

void plan_lms(SamplingPlan& plan) {
  SigmaSchedule schedule = discrete_sigma_schedule(plan, /*karras_timesteps_float32=*/false);
  plan.timesteps = schedule.timesteps;
  for (double sigma : schedule.sigmas) plan.sigmas.push_back(static_cast<float>(sigma));
  plan.sigmas.push_back(0.0);
  plan.init_noise_sigma = euler_init_noise_sigma(plan);
}

at::Tensor run_lms(SamplerRun& run, at::Tensor latents) {
  const SamplingPlan& plan = run.plan();
  std::vector<at::Tensor> derivatives;  // newest last, at most kLmsOrder
  for (size_t i = static_cast<size_t>(plan.begin_index); i < plan.timesteps.size(); ++i) {
    const auto sigma = static_cast<float>(plan.sigmas[i]);
    at::Tensor output = run.call_model(
        latents / static_cast<double>(std::sqrt(sigma * sigma + 1.0f)), plan.timesteps[i]);
    at::Tensor denoised;
    if (plan.config.prediction_type == PredictionType::kEpsilon) {
      denoised = latents - output * static_cast<double>(sigma);
    } else {
      const float c_out = -sigma / std::sqrt(sigma * sigma + 1.0f);
      denoised =
          output * static_cast<double>(c_out) + latents / static_cast<double>(sigma * sigma + 1.0f);
    }
    derivatives.push_back((latents - denoised) / static_cast<double>(sigma));
    if (static_cast<int64_t>(derivatives.size()) > kLmsOrder)
      derivatives.erase(derivatives.begin());

    // As diffusers, the order follows the global step index, even after an
    // img2img start with fewer derivatives than that (the extra terms drop out).
    const int64_t order = std::min<int64_t>(static_cast<int64_t>(i) + 1, kLmsOrder);
    at::Tensor update;
    const size_t terms = std::min<size_t>(static_cast<size_t>(order), derivatives.size());
    for (size_t j = 0; j < terms; ++j) {
      const double coefficient =
          lms_coefficient(plan.sigmas, order, static_cast<int64_t>(i), static_cast<int64_t>(j));
      at::Tensor term = derivatives[derivatives.size() - 1 - j] * coefficient;
      update = update.defined() ? update + term : term;
    }
    latents = latents + update;
    run.finish_call(static_cast<int64_t>(i), latents);
  }
  return latents;
}

}  // namespace doppel::sampling
