// The text form of attention neighborhoods: every accepted form parses to the rule it names and
// prints back the same; malformed ones fail naming the key, the text and the accepted forms; a
// list has one entry for all attention layers or one per layer; mean visible keys against counting.
#include <gtest/gtest.h>

#include <string>

#include "model/config.h"
#include "model/neighborhood_spec.h"
#include "support/naive_neighborhood.h"

namespace nexus {
namespace {

TEST(NeighborhoodSpec, ParsesEveryFormAndPrintsItBack) {
  for (const std::string text : {"full", "sliding:512", "dilated:8:16", "log", "block:256", "sink:4+sliding:128",
                                 "sink:1+log", "sink:16+block:64", "sink:2+dilated:3:5"})
    EXPECT_EQ(format_neighborhood(parse_neighborhood(text)), text);
  const Neighborhood d = parse_neighborhood("dilated:8:16");
  EXPECT_EQ(d.kind, Neighborhood::kDilated);
  EXPECT_EQ(d.width, 8);
  EXPECT_EQ(d.dilation, 16);
  const Neighborhood s = parse_neighborhood("sink:4+block:64");
  EXPECT_EQ(s.kind, Neighborhood::kBlock);
  EXPECT_EQ(s.width, 64);
  EXPECT_EQ(s.sink, 4);
}

TEST(NeighborhoodSpec, MalformedFormsNameTheKeyAndTheText) {
  for (const std::string bad : {"", "sliding", "sliding:0", "sliding:-3", "sliding:12x", "dilated:4", "dilated:4:0",
                                "log:2", "block:", "sink:4", "sink:0+log", "sink:4+sink:2+log", "windowed:4", "full:1"}) {
    try {
      (void)parse_neighborhood(bad);
      ADD_FAILURE() << "accepted \"" << bad << "\"";
    } catch (const ConfigError& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find("model.attention_neighborhood = \"" + bad + "\""), std::string::npos) << msg;
      EXPECT_NE(msg.find("sliding:W"), std::string::npos) << msg;  // the accepted forms
    }
  }
}

TEST(NeighborhoodSpec, ListsHaveOneEntryOrOnePerAttentionLayer) {
  EXPECT_EQ(parse_neighborhood_list("sliding:8", 3).size(), 3u);
  const auto per_layer = parse_neighborhood_list("sliding:8,log,full", 3);
  EXPECT_EQ(per_layer[1].kind, Neighborhood::kLog);
  try {
    (void)parse_neighborhood_list("sliding:8,log", 3);
    FAIL() << "expected ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("has 2 entries; expected 1"), std::string::npos) << e.what();
  }
  // Through the model config: attention layer ordinals follow the pattern.
  ModelConfig c;
  c.n_layers = 4;
  c.pattern = "AMAA";
  c.attention_neighborhood = "sliding:4,block:8,log";
  EXPECT_NO_THROW(c.validate());
  EXPECT_EQ(c.neighborhood_of(0).kind, Neighborhood::kSliding);
  EXPECT_EQ(c.neighborhood_of(2).kind, Neighborhood::kBlock);
  EXPECT_EQ(c.neighborhood_of(3).kind, Neighborhood::kLog);
  c.attention_neighborhood = "sliding:4,block:8";
  EXPECT_THROW(c.validate(), ConfigError);
}

TEST(NeighborhoodSpec, MeanVisibleKeysCountsThePairs) {
  for (const std::string text : {"full", "sliding:7", "dilated:3:5", "log", "block:6", "sink:3+sliding:4", "sink:2+log"}) {
    const Neighborhood n = parse_neighborhood(text);
    for (idx T : {idx(1), idx(50), idx(130)}) {
      double pairs = 0;
      for (idx q = 0; q < T; ++q)
        for (idx k = 0; k <= q; ++k) pairs += test::naive_visible(n, q, k) ? 1 : 0;
      EXPECT_DOUBLE_EQ(mean_visible_keys(n, T), pairs / double(T)) << text << " T=" << T;
    }
  }
}

}  // namespace
}  // namespace nexus
