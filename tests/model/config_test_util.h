// Shared by the model-config suites.
#pragma once

#include <string>

#include "model/config.h"

namespace nexus::test {

// The message of the ConfigError that c.validate() throws, or "" when the config is valid.
inline std::string error_of(const ModelConfig& c) {
  try {
    c.validate();
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

}  // namespace nexus::test
