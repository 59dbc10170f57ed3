// Many nodes at once: 200 nodes on two reactors get 200 distinct working addresses, and
// the admin endpoint lists them page by page, each exactly once.
#include <set>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "server/admin_server.h"
#include "tests/testing/relay_fixture.h"

namespace relay::testing {
namespace {

// Attaches `count` nodes to `relay`; their proxy addresses in *addresses ("" for a node
// that got none).
std::vector<std::unique_ptr<TestNode>> AttachNodes(RelayFixture& relay, int count,
                                                   std::vector<std::string>* addresses) {
  std::vector<std::unique_ptr<TestNode>> nodes;
  for (int i = 0; i < count; ++i) {
    std::string address;
    nodes.push_back(relay.NodeWithAddress(&address));
    addresses->push_back(address);
  }
  return nodes;
}

TEST(ScaleTest, TwoHundredNodesGetTwoHundredDistinctWorkingAddresses) {
  constexpr int kNodes = 200;
  RelayFixture relay(kNodes + 8, [](RelayConfig& c) { c.threads = 2; });
  std::vector<std::string> addresses;
  std::vector<std::unique_ptr<TestNode>> nodes = AttachNodes(relay, kNodes, &addresses);
  for (int i = 0; i < kNodes; ++i) {
    ASSERT_FALSE(addresses[i].empty()) << "node " << i;
  }
  const std::set<std::string> distinct(addresses.begin(), addresses.end());
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

// The "value" of `"key":"value"` in `json` (the first one), "" if absent.
std::string JsonField(const std::string& json, const std::string& key, size_t from = 0) {
  const std::string quoted = absl::StrCat("\"", key, "\":\"");
  const size_t at = json.find(quoted, from);
  if (at == std::string::npos) {
    return "";
  }
  const size_t start = at + quoted.size();
  return json.substr(start, json.find('"', start) - start);
}

TEST(ScaleTest, TheSessionListPagesThroughEverySessionOnceInOrder) {
  constexpr int kNodes = 190;  // under the default --proxy_requests_per_ip burst
  RelayFixture relay(kNodes + 8, [](RelayConfig& c) { c.threads = 2; });
  std::vector<std::string> attached;
  std::vector<std::unique_ptr<TestNode>> nodes = AttachNodes(relay, kNodes, &attached);
  for (int i = 0; i < kNodes; ++i) {
    ASSERT_FALSE(attached[i].empty()) << "node " << i;
  }
  const std::set<std::string> addresses(attached.begin(), attached.end());
  absl::StatusOr<std::unique_ptr<AdminServer>> admin =
      AdminServer::Start(HostPort{"127.0.0.1", 0}, &relay.server());
  ASSERT_TRUE(admin.ok()) << admin.status();
  // The gauges, without walking the sessions.
  const std::string metrics = (*admin)->Metrics();
  uint64_t sessions = 0;
  for (absl::string_view line : absl::StrSplit(metrics, '\n')) {
    uint64_t v = 0;
    if (absl::ConsumePrefix(&line, "relay_sessions{") &&
        absl::SimpleAtoi(line.substr(line.find(' ') + 1), &v)) {
      sessions += v;
    }
  }
  EXPECT_EQ(sessions, static_cast<uint64_t>(kNodes)) << metrics;

  // Pages of 60 (the last one short), each session once, reactor by reactor in port order.
  std::set<std::string> listed;
  AdminServer::SessionCursor after;
  int pages = 0;
  for (; pages < 10; ++pages) {
    const std::string page = (*admin)->Sessions(60, after);
    ASSERT_NE(page.find("\"sessions_total\":190,"), std::string::npos) << page;
    int in_page = 0;
    for (size_t at = page.find("\"proxy_address\":"); at != std::string::npos;
         at = page.find("\"proxy_address\":", at + 1)) {
      EXPECT_TRUE(listed.insert(JsonField(page, "proxy_address", at)).second) << "listed twice";
      ++in_page;
    }
    const size_t next = page.find("\"next\":\"");
    if (next == std::string::npos) {
      EXPECT_NE(page.find("\"next\":null"), std::string::npos) << page;
      break;
    }
    EXPECT_EQ(in_page, 60);
    std::pair<std::string, std::string> cursor = absl::StrSplit(JsonField(page, "next"), '.');
    ASSERT_TRUE(absl::SimpleAtoi(cursor.first, &after.shard) &&
                absl::SimpleAtoi(cursor.second, &after.key))
        << page;
  }
  EXPECT_EQ(pages, 3);  // 60 + 60 + 60 + 10
  EXPECT_EQ(listed, addresses);
  (*admin)->Stop();
}

}  // namespace
}  // namespace relay::testing
