// Value syntaxes: sizes, durations, IP ranges (IPv4-mapped), endpoints.
#include <gtest/gtest.h>

#include "config/detail.hpp"
#include "config/schema.hpp"

namespace postern::config {
namespace {

using namespace std::chrono_literals;

TEST(config_values, sizes_are_powers_of_1024) {
    EXPECT_EQ(parse_size("35MB"), 36700160u);
    EXPECT_EQ(parse_size("256KB"), 262144u);
    EXPECT_EQ(parse_size("1GB"), 1073741824u);
    EXPECT_EQ(parse_size("1gb"), 1073741824u);
    EXPECT_EQ(parse_size("2 MB"), 2097152u);
    EXPECT_EQ(parse_size("512"), 512u);
    EXPECT_EQ(parse_size("512B"), 512u);
    EXPECT_FALSE(parse_size(""));
    EXPECT_FALSE(parse_size("MB"));
    EXPECT_FALSE(parse_size("-1MB"));
    EXPECT_FALSE(parse_size("1.5MB"));
    EXPECT_FALSE(parse_size("3 megabytes"));
    EXPECT_FALSE(parse_size("99999999999999999999KB"));
    EXPECT_FALSE(parse_size("17179869184GB"));   // overflows 64 bits
}

TEST(config_values, durations) {
    EXPECT_EQ(parse_duration("30s"), 30s);
    EXPECT_EQ(parse_duration("5m"), 5min);
    EXPECT_EQ(parse_duration("4h"), 4h);
    EXPECT_EQ(parse_duration("2d"), 48h);
    EXPECT_EQ(parse_duration("1h30m"), 90min);
    EXPECT_FALSE(parse_duration(""));
    EXPECT_FALSE(parse_duration("30"));
    EXPECT_FALSE(parse_duration("s"));
    EXPECT_FALSE(parse_duration("5w"));
    EXPECT_FALSE(parse_duration("-5s"));
}

TEST(config_values, format_is_the_inverse_of_parse) {
    for (std::uint64_t v : {0ull, 1ull, 1000ull, 1024ull, 36700160ull, 1073741824ull, 1536ull * 1024})
        EXPECT_EQ(parse_size(detail::format_size(v)), v) << detail::format_size(v);
    EXPECT_EQ(detail::format_size(36700160), "35MB");
    EXPECT_EQ(detail::format_size(1536 * 1024), "1536KB");
    for (seconds v : {0s, 1s, 59s, 60s, 90s, 3600s, 86400s, 90000s})
        EXPECT_EQ(parse_duration(detail::format_duration(v)), v) << detail::format_duration(v);
    EXPECT_EQ(detail::format_duration(30s), "30s");
    EXPECT_EQ(detail::format_duration(600s), "10m");
    EXPECT_EQ(detail::format_duration(48h), "2d");
}

boost::asio::ip::address ip(const char* s) { return boost::asio::ip::make_address(s); }

ip_range range(std::string_view s) {
    std::string why;
    auto r = detail::parse_ip_range(s, why);
    EXPECT_TRUE(r) << why;
    return r.value_or(ip_range{});
}

TEST(config_values, ip_range_contains) {
    auto r = range("192.0.2.0/24");
    EXPECT_TRUE(r.contains(ip("192.0.2.1")));
    EXPECT_TRUE(r.contains(ip("192.0.2.255")));
    EXPECT_FALSE(r.contains(ip("192.0.3.1")));
    EXPECT_FALSE(r.contains(ip("2001:db8::1")));
    auto odd = range("10.0.0.0/9");
    EXPECT_TRUE(odd.contains(ip("10.127.255.255")));
    EXPECT_FALSE(odd.contains(ip("10.128.0.0")));
    auto v6 = range("2001:db8::/32");
    EXPECT_TRUE(v6.contains(ip("2001:db8:ffff::1")));
    EXPECT_FALSE(v6.contains(ip("2001:db9::1")));
    EXPECT_FALSE(v6.contains(ip("192.0.2.1")));
    auto host = range("192.0.2.7");
    EXPECT_EQ(host.prefix_length, 32u);
    EXPECT_TRUE(host.contains(ip("192.0.2.7")));
    EXPECT_FALSE(host.contains(ip("192.0.2.8")));
}

TEST(config_values, ipv4_mapped_addresses_match_as_ipv4) {
    auto r = range("192.0.2.0/24");
    EXPECT_TRUE(r.contains(ip("::ffff:192.0.2.10")));
    EXPECT_FALSE(r.contains(ip("::ffff:198.51.100.1")));
    EXPECT_TRUE(range("0.0.0.0/0").contains(ip("::ffff:203.0.113.5")));
    // ::/0 is the IPv6 world; a mapped IPv4 client belongs to 0.0.0.0/0 instead.
    EXPECT_FALSE(range("::/0").contains(ip("::ffff:203.0.113.5")));
    EXPECT_TRUE(range("::/0").contains(ip("2001:db8::5")));
    // A range written in mapped form means the IPv4 range.
    auto mapped = range("::ffff:192.0.2.0/120");
    EXPECT_TRUE(mapped.network.is_v4());
    EXPECT_EQ(mapped.prefix_length, 24u);
    EXPECT_TRUE(mapped.contains(ip("192.0.2.99")));
    EXPECT_TRUE(range("0.0.0.0/0").is_everything());
    EXPECT_TRUE(range("::/0").is_everything());
}

TEST(config_values, endpoints) {
    std::string why;
    auto e = detail::parse_endpoint("[::1]:2525", detail::host_kind::ip_address, 0, why);
    ASSERT_TRUE(e) << why;
    EXPECT_EQ(e->host, "::1");
    EXPECT_EQ(e->port, 2525);
    EXPECT_EQ(e->text, "[::1]:2525");
    e = detail::parse_endpoint("127.0.0.1:0", detail::host_kind::ip_address, 0, why);
    ASSERT_TRUE(e);
    EXPECT_EQ(e->port, 0);
    EXPECT_FALSE(detail::parse_endpoint("[::1]", detail::host_kind::ip_address, 0, why));
    EXPECT_TRUE(detail::parse_endpoint("[::1]", detail::host_kind::ip_address, 53, why));
    EXPECT_FALSE(detail::parse_endpoint("[::1", detail::host_kind::ip_address, 0, why));
    EXPECT_FALSE(detail::parse_endpoint(":25", detail::host_kind::ip_or_name, 0, why));
    EXPECT_FALSE(detail::parse_endpoint("a b:25", detail::host_kind::ip_or_name, 0, why));
    EXPECT_TRUE(detail::parse_endpoint("relay.example.test", detail::host_kind::ip_or_name, 25, why));
}

TEST(config_values, fingerprints) {
    std::string why;
    std::string hex(64, 'a');
    EXPECT_EQ(detail::normalise_fingerprint("sha256:" + std::string(64, 'A'), why), hex);
    EXPECT_FALSE(detail::normalise_fingerprint(hex, why));
    EXPECT_FALSE(detail::normalise_fingerprint("sha256:" + std::string(63, 'a') + "g", why));
}

}  // namespace
}  // namespace postern::config
