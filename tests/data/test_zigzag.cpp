// The zigzag context-parallel layout: rank c holds chunks c and 2cp-1-c, and the ranks' slices
// reassemble every full sequence.
#include <gtest/gtest.h>

#include "data/zigzag.h"
#include "data_test_util.h"

namespace nexus {
namespace {

TEST(Zigzag, SlicesHoldChunksCAndMirrorAndReassemble) {
  const idx B = 3, T = 24;
  std::vector<std::int32_t> full(static_cast<std::size_t>(B * T));
  for (idx b = 0; b < B; ++b)
    for (idx t = 0; t < T; ++t) full[static_cast<std::size_t>(b * T + t)] = static_cast<std::int32_t>(1000 * b + t);

  for (const idx cp : {1, 2, 4}) {
    const idx L = T / cp, C = L / 2;
    std::vector<std::int32_t> rebuilt(full.size(), -1);
    for (idx c = 0; c < cp; ++c) {
      std::vector<std::int32_t> local(static_cast<std::size_t>(B * L), -1);
      std::vector<idx> pos(static_cast<std::size_t>(L), -1);
      zigzag_slice(full.data(), B, T, cp, c, local.data());
      zigzag_positions(T, cp, c, pos.data());
      for (idx j = 0; j < L; ++j) {
        // Local token j belongs to chunk c (first half) or chunk 2cp-1-c (second half).
        const idx chunk = j < C ? c : 2 * cp - 1 - c;
        ASSERT_EQ(pos[static_cast<std::size_t>(j)], chunk * C + j % C) << "cp " << cp << " c " << c << " j " << j;
        for (idx b = 0; b < B; ++b) {
          const auto v = local[static_cast<std::size_t>(b * L + j)];
          ASSERT_EQ(v, full[static_cast<std::size_t>(b * T + pos[static_cast<std::size_t>(j)])]);
          auto& slot = rebuilt[static_cast<std::size_t>(b * T + pos[static_cast<std::size_t>(j)])];
          ASSERT_EQ(slot, -1) << "position held by two ranks";
          slot = v;
        }
      }
    }
    EXPECT_EQ(rebuilt, full) << "cp " << cp;
  }
}

TEST(Zigzag, Cp2ByHand) {
  // T = 8, cp = 2: chunks of 2; rank 0 holds chunks 0 and 3, rank 1 holds chunks 1 and 2.
  const std::vector<std::int32_t> full = {0, 1, 2, 3, 4, 5, 6, 7};
  std::vector<std::int32_t> local(4);
  zigzag_slice(full.data(), 1, 8, 2, 0, local.data());
  EXPECT_EQ(local, (std::vector<std::int32_t>{0, 1, 6, 7}));
  zigzag_slice(full.data(), 1, 8, 2, 1, local.data());
  EXPECT_EQ(local, (std::vector<std::int32_t>{2, 3, 4, 5}));
}

TEST(Zigzag, RejectsIndivisibleLengthsAndBadRanks) {
  std::vector<idx> pos(8);
  const auto msg = test::error_of([&] { zigzag_positions(20, 4, 0, pos.data()); });
  EXPECT_NE(msg.find("seq_len = 20"), std::string::npos) << msg;
  EXPECT_NE(msg.find("2 * cp = 8"), std::string::npos) << msg;
  EXPECT_NE(test::error_of([&] { zigzag_positions(16, 2, 2, pos.data()); }).find("cp rank 2"), std::string::npos);
}

}  // namespace
}  // namespace nexus
