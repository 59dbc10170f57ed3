// What the relay reads of its host: an interface address of each family, the sysctls, the
// CPUs (values depend on the machine; their form does not).
#include "net/host_info.h"

#include "core/host_port.h"
#include "gtest/gtest.h"

namespace relay::net {
namespace {

TEST(HostInfoTest, AnInterfaceAddressOfEachFamilyNeverAWildcard) {
  const std::string v4 = FirstInterfaceAddress(false);
  EXPECT_TRUE(IsIpv4(v4)) << v4;
  EXPECT_NE(v4, "0.0.0.0");
  const std::string v6 = FirstInterfaceAddress(true);
  EXPECT_TRUE(IsIpv6(v6)) << v6;
  EXPECT_NE(v6, "::");
  EXPECT_NE(v6.rfind("fe80", 0), 0u) << "a link-local address cannot be reached: " << v6;
}

TEST(HostInfoTest, SysctlsAndCpus) {
  uint16_t lo = 0, hi = 0;
  ASSERT_TRUE(ReadLocalPortRange(&lo, &hi));
  EXPECT_LE(lo, hi);
  EXPECT_GT(lo, 0);
  EXPECT_GT(ReadRmemMax(), 0u);
  EXPECT_GE(OnlineCpus(), 1);
}

}  // namespace
}  // namespace relay::net
