// Many nodes at once: 200 nodes on two reactors get 200 distinct working addresses.
#include <set>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/testing/relay_fixture.h"

namespace relay::testing {
namespace {

TEST(ScaleTest, TwoHundredNodesGetTwoHundredDistinctWorkingAddresses) {
  constexpr int kNodes = 200;
  RelayFixture relay(kNodes + 8, [](RelayConfig& c) { c.threads = 2; });
  std::vector<std::unique_ptr<TestNode>> nodes;
  std::vector<std::string> addresses;
  std::set<std::string> distinct;
  for (int i = 0; i < kNodes; ++i) {
    std::string address;
    nodes.push_back(relay.NodeWithAddress(&address));
    ASSERT_FALSE(address.empty()) << "node " << i;
    addresses.push_back(address);
    distinct.insert(address);
  }
  EXPECT_EQ(distinct.size(), static_cast<size_t>(kNodes));
  // Every address delivers to its own node, and only to it.
  for (int i = 0; i < kNodes; ++i) {
    absl::StatusOr<net::UniqueFd> peer = ConnectTo(addresses[i]);
    ASSERT_TRUE(peer.ok()) << addresses[i];
    ASSERT_TRUE(WriteAll(peer->get(), MakeFrame(absl::StrCat("for node ", i))));
  }
  for (int i = 0; i < kNodes; ++i) {
    absl::StatusOr<Frame> f = nodes[i]->ReadDataFrame();
    ASSERT_TRUE(f.ok()) << "node " << i << ": " << f.status();
    EXPECT_EQ(f->payload, absl::StrCat("for node ", i));
  }
  EXPECT_EQ(relay.Counter("sessions_started"), static_cast<uint64_t>(kNodes));
  EXPECT_GT(relay.Counter("main_handed_off"), 0u);  // both shards took part
}

}  // namespace
}  // namespace relay::testing
