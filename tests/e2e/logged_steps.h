// What a training run logged per step, read back from its metrics.jsonl (the root rank's file):
// the gradient norm, measured before clipping, is the one number that shows the scale of the
// reduced gradient, which AdamW's normalised update and clipping hide from the loss and weights.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace nexus::test {

// The "grad_norm" of every step line in `metrics_path`, in file order (a run with
// train.log_every = 1 logs every step). A missing file or a line that is not JSON is a test
// failure and gives what was read so far; it does not throw, because in MPI tests only the root
// rank reads the file, and a throw there would leave the other ranks waiting in a collective.
inline std::vector<double> logged_grad_norms(const std::string& metrics_path) {
  std::vector<double> norms;
  std::ifstream in(metrics_path);
  if (!in) {
    ADD_FAILURE() << "cannot read metrics file '" << metrics_path << "'";
    return norms;
  }
  std::string line;
  while (std::getline(in, line)) {
    const nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) {
      ADD_FAILURE() << metrics_path << ": not a JSON line: " << line;
      return norms;
    }
    if (j.contains("grad_norm")) norms.push_back(j.at("grad_norm").get<double>());
  }
  return norms;
}

// `got`[s] against `want`[s + want_from] for every s, which must cover the rest of `want`,
// relative to want. Prints the worst relative difference so a test log shows the margin.
inline void expect_same_grad_norms(const std::vector<double>& got, const std::vector<double>& want,
                                   std::size_t want_from, double rel_tol, const std::string& what) {
  ASSERT_FALSE(got.empty()) << what;
  ASSERT_EQ(got.size() + want_from, want.size()) << what;
  double worst = 0;
  for (std::size_t s = 0; s < got.size(); ++s) {
    const double ref = want[s + want_from];
    ASSERT_GT(ref, 0) << what << ", step " << s + want_from;
    worst = std::max(worst, std::abs(got[s] - ref) / ref);
    EXPECT_NEAR(got[s], ref, rel_tol * ref) << what << ": gradient norm of step " << s + want_from;
  }
  std::printf("%s: max relative gradient-norm difference %.3g over %zu steps\n", what.c_str(), worst, got.size());
}

}  // namespace nexus::test
