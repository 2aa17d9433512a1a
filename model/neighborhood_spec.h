// The text form of attention neighborhoods (kernels/neighborhood.h), as written in configs
// (`model.attention_neighborhood`), checkpoints and exported config.json:
//   full | sliding:W | dilated:W:D | log | block:C | sink:K+<one of the others>
// A list is comma-separated, one entry for every attention layer or one for all of them.
#pragma once

#include <string>
#include <vector>

#include "kernels/neighborhood.h"
#include "kernels/ops.h"

namespace nexus {

// Throws ConfigError naming `key`, the text and the accepted forms when `text` is not one of them.
Neighborhood parse_neighborhood(const std::string& text, const std::string& key = "model.attention_neighborhood");
// The canonical text form: parse_neighborhood(format_neighborhood(n)) == n.
std::string format_neighborhood(const Neighborhood& n);

// One neighborhood per attention layer from a comma-separated list of 1 or `attention_layers`
// entries (one entry applies to every layer). Throws ConfigError naming `key` otherwise.
std::vector<Neighborhood> parse_neighborhood_list(const std::string& text, idx attention_layers,
                                                  const std::string& key = "model.attention_neighborhood");

bool operator==(const Neighborhood& a, const Neighborhood& b);

// The number of keys a query reads, averaged over the positions 0 .. T-1 of a sequence ((T+1)/2
// for full): what attention's FLOPs follow.
double mean_visible_keys(const Neighborhood& n, idx T);

}  // namespace nexus
