#include "core/config.h"

#include <cmath>

#include "gtest/gtest.h"

namespace relay {
namespace {

TEST(ConfigTest, ParsesHostPort) {
  absl::StatusOr<HostPort> hp = ParseHostPort("127.0.0.1:6008");
  ASSERT_TRUE(hp.ok());
  EXPECT_EQ(hp->host, "127.0.0.1");
  EXPECT_EQ(hp->port, 6008);
  EXPECT_EQ(ParseHostPort("localhost:0")->host, "127.0.0.1");
  EXPECT_FALSE(ParseHostPort("127.0.0.1").ok());
  EXPECT_FALSE(ParseHostPort("127.0.0.1:70000").ok());
  EXPECT_FALSE(ParseHostPort("example.org:80").ok());
  EXPECT_FALSE(ParseHostPort("1.2.3.4:x").ok());
}

TEST(ConfigTest, ARelayAddressMayBeADnsName) {
  absl::StatusOr<HostPort> hp = ParseRelayAddress("relays.example.org:6008");
  ASSERT_TRUE(hp.ok()) << hp.status();
  EXPECT_EQ(hp->host, "relays.example.org");
  EXPECT_EQ(hp->port, 6008);
  EXPECT_EQ(ParseRelayAddress("localhost:6008")->host, "localhost");  // both loopbacks
  EXPECT_EQ(ParseRelayAddress("10.0.0.7:6008")->host, "10.0.0.7");
  EXPECT_EQ(ParseRelayAddress("[::1]:6008")->host, "::1");
  EXPECT_FALSE(ParseRelayAddress("relays.example.org:0").ok());
  EXPECT_FALSE(ParseRelayAddress("relays.example.org").ok());
  EXPECT_FALSE(ParseRelayAddress("bad_name:6008").ok());
  EXPECT_FALSE(ParseRelayAddress("-x.org:6008").ok());
  EXPECT_FALSE(IsHostName("10.0.0.7"));
  EXPECT_FALSE(IsHostName("123"));
}

TEST(ConfigTest, ParsesAndFormatsIpv6InBrackets) {
  absl::StatusOr<HostPort> hp = ParseHostPort("[::1]:6008");
  ASSERT_TRUE(hp.ok()) << hp.status();
  EXPECT_EQ(hp->host, "::1");
  EXPECT_EQ(hp->port, 6008);
  EXPECT_EQ(ParseHostPort("[::]:0")->host, "::");
  EXPECT_EQ(ParseHostPort("[2001:db8::7]:80")->host, "2001:db8::7");
  EXPECT_FALSE(ParseHostPort("::1:6008").ok()) << "IPv6 needs brackets";
  EXPECT_FALSE(ParseHostPort("[127.0.0.1]:80").ok());
  EXPECT_FALSE(ParseHostPort("[zz::1]:80").ok());
  EXPECT_FALSE(ParseHostPort("[::1]").ok());
  EXPECT_EQ(FormatHostPort("::1", 6008), "[::1]:6008");
  EXPECT_EQ(FormatHostPort("10.0.0.5", 6008), "10.0.0.5:6008");
  EXPECT_TRUE(IsAnyAddress("::"));
  EXPECT_TRUE(IsAnyAddress("0.0.0.0"));
  EXPECT_FALSE(IsAnyAddress("::1"));
}

TEST(ConfigTest, TheAdvertisedAddressFollowsTheFamilyOfTheFirstListener) {
  RelayConfig c;
  c.listen = HostPort{"::1", 6008};
  EXPECT_TRUE(ValidateConfig(c).ok());
  EXPECT_EQ(ResolveAdvertiseHost(c), "::1");
  c.listen = HostPort{"::", 6008};
  EXPECT_TRUE(NeedsInterfaceAddress(c));
  EXPECT_EQ(ResolveAdvertiseHost(c), "::1");  // no interface address known
  c.interface_address = "2001:db8::9";
  EXPECT_FALSE(NeedsInterfaceAddress(c));
  EXPECT_EQ(ResolveAdvertiseHost(c), "2001:db8::9");
  c.advertise_host = "203.0.113.7";  // IPv4 while the proxy ports are IPv6
  EXPECT_FALSE(ValidateConfig(c).ok());
  c.advertise_host = "2001:db8::7";
  EXPECT_TRUE(ValidateConfig(c).ok());
  c.more_listen.push_back(HostPort{"example.org", 1});
  EXPECT_FALSE(ValidateConfig(c).ok());
}

TEST(ConfigTest, ParsesPortRanges) {
  uint16_t lo = 0, hi = 0;
  ASSERT_TRUE(ParsePortRange("55535-65534", &lo, &hi).ok());
  EXPECT_EQ(lo, 55535);
  EXPECT_EQ(hi, 65534);
  ASSERT_TRUE(ParsePortRange("7-7", &lo, &hi).ok());
  EXPECT_EQ(lo, 7);
  EXPECT_EQ(hi, 7);
  EXPECT_FALSE(ParsePortRange("10-9", &lo, &hi).ok());
  EXPECT_FALSE(ParsePortRange("0-9", &lo, &hi).ok());
  EXPECT_FALSE(ParsePortRange("10", &lo, &hi).ok());
  EXPECT_FALSE(ParsePortRange("1-65536", &lo, &hi).ok());
}

TEST(ConfigTest, DefaultsAreValidAndMatchTheProtocol) {
  RelayConfig c;
  EXPECT_TRUE(ValidateConfig(c).ok());
  EXPECT_EQ(c.listen.port, 6008);
  EXPECT_EQ(c.network_id, 1564141146u);
  EXPECT_EQ(c.port_lo, 20000);  // below Linux's ephemeral range (32768-60999)
  EXPECT_EQ(c.port_hi, 29999);
  EXPECT_EQ(c.keepalive_timeout, absl::Seconds(180));
  EXPECT_EQ(c.lease_ttl, absl::Minutes(180));
  EXPECT_EQ(c.max_frame_bytes, 16u << 20);
}

TEST(ConfigTest, RefusesBadValues) {
  RelayConfig c;
  c.keepalive_timeout = absl::ZeroDuration();
  EXPECT_FALSE(ValidateConfig(c).ok());
  c = RelayConfig();
  c.threads = -1;
  EXPECT_FALSE(ValidateConfig(c).ok());
  c = RelayConfig();
  c.max_frame_bytes = 0;
  EXPECT_FALSE(ValidateConfig(c).ok());
  // --reactor_slice: 0 (the kernel's default) or what Linux accepts, 100us to 100ms.
  for (absl::Duration bad : {absl::Microseconds(99), absl::Milliseconds(101), -absl::Seconds(1)}) {
    c = RelayConfig();
    c.reactor_slice = bad;
    absl::Status s = ValidateConfig(c);
    EXPECT_FALSE(s.ok()) << absl::FormatDuration(bad);
    EXPECT_NE(s.message().find("--reactor_slice="), absl::string_view::npos) << s;
  }
  for (absl::Duration good :
       {absl::ZeroDuration(), absl::Microseconds(100), absl::Milliseconds(100)}) {
    c = RelayConfig();
    c.reactor_slice = good;
    EXPECT_TRUE(ValidateConfig(c).ok()) << absl::FormatDuration(good);
  }
  c = RelayConfig();
  c.advertise_host = "not-an-ip";
  EXPECT_FALSE(ValidateConfig(c).ok());
  c = RelayConfig();
  c.control_rate = -1;
  EXPECT_FALSE(ValidateConfig(c).ok());
  c.control_rate = std::nan("");
  EXPECT_FALSE(ValidateConfig(c).ok());
  c = RelayConfig();
  c.control_burst = 0;
  EXPECT_FALSE(ValidateConfig(c).ok());
  c.control_rate = 0;  // no rate: the burst does not matter
  EXPECT_TRUE(ValidateConfig(c).ok());
  c = RelayConfig();
  c.control_per_ip = -1;
  EXPECT_FALSE(ValidateConfig(c).ok());
}

TEST(ConfigTest, ResolvesAdvertiseHostAndThreads) {
  RelayConfig c;
  c.advertise_host = "203.0.113.7";
  EXPECT_EQ(ResolveAdvertiseHost(c), "203.0.113.7");
  c.advertise_host.clear();
  c.listen.host = "127.0.0.1";
  EXPECT_EQ(ResolveAdvertiseHost(c), "127.0.0.1");
  c.listen.host = "0.0.0.0";
  EXPECT_EQ(ResolveAdvertiseHost(c), "127.0.0.1");
  c.interface_address = "192.0.2.4";
  EXPECT_EQ(ResolveAdvertiseHost(c), "192.0.2.4");
  c.threads = 3;
  EXPECT_EQ(ResolveThreads(c, 8), 3);
  c.threads = 0;
  EXPECT_EQ(ResolveThreads(c, 8), 8);
  EXPECT_EQ(ResolveThreads(c, 0), 1);
}

TEST(StartupWarningsTest, GuessedAdvertiseHostAndPortRangeOverlap) {
  RelayConfig c;  // 0.0.0.0, no --advertise_host, 20000-29999
  std::vector<std::string> w = StartupWarnings(c, "10.0.0.4", 32768, 60999, 0);
  ASSERT_EQ(w.size(), 1u);  // the default range is outside the ephemeral one
  EXPECT_NE(w[0].find("advertise 10.0.0.4, guessed"), std::string::npos) << w[0];
  EXPECT_NE(w[0].find("--advertise_host"), std::string::npos);
  c.port_lo = 55535;  // the Go relay's range
  c.port_hi = 65534;
  w = StartupWarnings(c, "10.0.0.4", 32768, 60999, 0);
  ASSERT_EQ(w.size(), 2u);
  EXPECT_NE(w[1].find("--port_range=55535-65534 overlaps net.ipv4.ip_local_port_range "
                      "(32768-60999) in 5465 ports not in net.ipv4.ip_local_reserved_ports"),
            std::string::npos)
      << w[1];
  // Reserved ports are safe: all of the overlap, or part of it.
  EXPECT_EQ(StartupWarnings(c, "10.0.0.4", 32768, 60999, 0, "55535-60999\n").size(), 1u);
  w = StartupWarnings(c, "10.0.0.4", 32768, 60999, 0, "8080,55535-60000,60999");
  ASSERT_EQ(w.size(), 2u);
  EXPECT_NE(w[1].find(" in 998 ports "), std::string::npos) << w[1];  // 60001-60998
  c.advertise_host = "203.0.113.7";
  c.port_lo = 61000;
  c.port_hi = 65000;
  EXPECT_TRUE(StartupWarnings(c, "203.0.113.7", 32768, 60999, 0).empty());
  EXPECT_EQ(StartupWarnings(c, "203.0.113.7", 32768, 61000, 0).size(), 1u);  // touches 61000
  EXPECT_TRUE(StartupWarnings(c, "203.0.113.7", 0, 0, 0).empty());           // range unknown
  c.advertise_host.clear();
  c.listen.host = "127.0.0.1";  // a specific listen address is advertised, not guessed
  EXPECT_TRUE(StartupWarnings(c, "127.0.0.1", 32768, 60999, 0).empty());
}

TEST(StartupWarningsTest, PeerReceiveBufferAboveRmemMax) {
  RelayConfig c;
  c.advertise_host = "203.0.113.7";
  c.port_lo = 61000;
  c.port_hi = 65000;
  // Debian's default net.core.rmem_max (212992) cuts the 512 KiB buffer: one warning.
  std::vector<std::string> w = StartupWarnings(c, "203.0.113.7", 0, 0, 212992);
  ASSERT_EQ(w.size(), 1u);
  EXPECT_NE(w[0].find("net.core.rmem_max (212992)"), std::string::npos) << w[0];
  EXPECT_NE(w[0].find("at least 524288"), std::string::npos) << w[0];
  EXPECT_TRUE(StartupWarnings(c, "203.0.113.7", 0, 0, 524288).empty());
  EXPECT_TRUE(StartupWarnings(c, "203.0.113.7", 0, 0, 0).empty());  // unknown
}

TEST(ConfigTest, RefusesBadPeerReceiveBuffers) {
  RelayConfig c;
  EXPECT_TRUE(ValidateConfig(c).ok());
  c.peer_receive_buffer = 1024;  // below a page
  EXPECT_FALSE(ValidateConfig(c).ok());
  c.peer_receive_buffer = (1u << 30) + 1;
  EXPECT_FALSE(ValidateConfig(c).ok());
}

}  // namespace
}  // namespace relay
