// Decoding of the rdata libunbound returns (RFC 1035 §3.1, §3.3.9; RFC 3596; RFC 7505).
#include <gtest/gtest.h>

#include <vector>

#include "route/dns_records.hpp"

namespace postern::route {
namespace {

std::vector<std::uint8_t> wire_name(std::initializer_list<std::string_view> labels) {
    std::vector<std::uint8_t> out;
    for (auto label : labels) {
        out.push_back(static_cast<std::uint8_t>(label.size()));
        out.insert(out.end(), label.begin(), label.end());
    }
    out.push_back(0);
    return out;
}

std::vector<std::uint8_t> mx_rdata(std::uint16_t preference, std::initializer_list<std::string_view> labels) {
    std::vector<std::uint8_t> out{static_cast<std::uint8_t>(preference >> 8), static_cast<std::uint8_t>(preference)};
    auto name = wire_name(labels);
    out.insert(out.end(), name.begin(), name.end());
    return out;
}

TEST(dns_records, mx_with_host_name) {
    auto mx = decode_mx(mx_rdata(10, {"mx1", "Example", "test"}));
    ASSERT_TRUE(mx);
    EXPECT_EQ(mx->preference, 10);
    EXPECT_EQ(mx->exchange, "mx1.Example.test");
}

TEST(dns_records, null_mx_is_the_root_name) {
    auto mx = decode_mx(mx_rdata(0, {}));
    ASSERT_TRUE(mx);
    EXPECT_EQ(mx->preference, 0);
    EXPECT_EQ(mx->exchange, "");
}

TEST(dns_records, preference_is_big_endian) {
    auto mx = decode_mx(mx_rdata(0x1234, {"a"}));
    ASSERT_TRUE(mx);
    EXPECT_EQ(mx->preference, 0x1234);
}

TEST(dns_records, odd_bytes_in_labels_are_escaped) {
    auto mx = decode_mx(mx_rdata(5, {"we.ird", "test"}));
    ASSERT_TRUE(mx);
    EXPECT_EQ(mx->exchange, "we\\046ird.test");   // one label, not two
}

TEST(dns_records, malformed_mx_is_refused) {
    EXPECT_FALSE(decode_mx({}));
    EXPECT_FALSE(decode_mx(std::vector<std::uint8_t>{0, 10}));
    EXPECT_FALSE(decode_mx(std::vector<std::uint8_t>{0, 10, 3, 'a', 'b'}));          // truncated label
    EXPECT_FALSE(decode_mx(std::vector<std::uint8_t>{0, 10, 0xC0, 0x0C}));           // compression pointer
    auto trailing = mx_rdata(10, {"a"});
    trailing.push_back(7);
    EXPECT_FALSE(decode_mx(trailing));                                               // bytes after the name
    std::vector<std::uint8_t> long_label{0, 10, 64};
    long_label.insert(long_label.end(), 64, 'x');
    long_label.push_back(0);
    EXPECT_FALSE(decode_mx(long_label));
}

TEST(dns_records, names_over_255_octets_are_refused) {
    std::vector<std::uint8_t> rdata{0, 10};
    for (int i = 0; i < 5; ++i) {
        rdata.push_back(60);
        rdata.insert(rdata.end(), 60, 'x');
    }
    rdata.push_back(0);
    EXPECT_FALSE(decode_mx(rdata));
}

TEST(dns_records, addresses) {
    auto v4 = decode_a(std::vector<std::uint8_t>{192, 0, 2, 1});
    ASSERT_TRUE(v4);
    EXPECT_EQ(v4->to_string(), "192.0.2.1");
    std::vector<std::uint8_t> six(16, 0);
    six[0] = 0x20;
    six[1] = 0x01;
    six[2] = 0x0d;
    six[3] = 0xb8;
    six[15] = 1;
    auto v6 = decode_aaaa(six);
    ASSERT_TRUE(v6);
    EXPECT_EQ(v6->to_string(), "2001:db8::1");
    EXPECT_FALSE(decode_a(std::vector<std::uint8_t>{1, 2, 3}));
    EXPECT_FALSE(decode_aaaa(std::vector<std::uint8_t>{1, 2, 3, 4}));
}

}  // namespace
}  // namespace postern::route
