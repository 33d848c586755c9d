// RFC 8460 §3: the _smtp._tls record.
#include "tlsrpt/record.hpp"

#include <gtest/gtest.h>

namespace postern::tlsrpt {
namespace {

TEST(tlsrpt_record, mailto_and_https_addresses_in_published_order) {
    std::string error;
    const auto r = parse_record("v=TLSRPTv1; rua=mailto:tlsrpt@example.net,https://reports.example.net:8443/v1/tlsrpt?x=1",
                                error);
    ASSERT_TRUE(r) << error;
    ASSERT_EQ(r->rua.size(), 2u);
    EXPECT_EQ(r->rua[0].what, report_uri::scheme::mailto);
    EXPECT_EQ(r->rua[0].address, "tlsrpt@example.net");
    EXPECT_EQ(r->rua[1].what, report_uri::scheme::https);
    EXPECT_EQ(r->rua[1].host, "reports.example.net");
    EXPECT_EQ(r->rua[1].port, 8443);
    EXPECT_EQ(r->rua[1].path, "/v1/tlsrpt?x=1");
}

TEST(tlsrpt_record, spaces_around_delimiters_extensions_and_a_trailing_semicolon) {
    std::string error;
    const auto r = parse_record("v=TLSRPTv1 ;  ext_1=value ; rua = mailto:a@example.net ,  mailto:b%40x@example.net ;", error);
    // "rua = " has a space before '=': the field name is "rua " and not rua.
    EXPECT_FALSE(r);
    const auto ok = parse_record("v=TLSRPTv1 ;  ext_1=value ; rua=mailto:a@example.net ,  mailto:b%2Bx@example.net ;", error);
    ASSERT_TRUE(ok) << error;
    ASSERT_EQ(ok->rua.size(), 2u);
    EXPECT_EQ(ok->rua[1].address, "b+x@example.net");   // percent-decoded
}

TEST(tlsrpt_record, https_without_a_path_posts_to_the_root) {
    std::string error;
    const auto r = parse_report_uri("https://Reports.Example.NET.", error);
    ASSERT_TRUE(r) << error;
    EXPECT_EQ(r->host, "reports.example.net");
    EXPECT_EQ(r->port, 443);
    EXPECT_EQ(r->path, "/");
}

TEST(tlsrpt_record, malformed_records_are_refused_with_a_reason) {
    for (const char* text : {"v=TLSRPTv2; rua=mailto:a@example.net", "rua=mailto:a@example.net; v=TLSRPTv1",
                             "v=TLSRPTv1", "v=TLSRPTv1; rua=", "v=TLSRPTv1; rua=ftp://x.example/",
                             "v=TLSRPTv1; rua=mailto:a@example.net; rua=mailto:b@example.net",
                             "v=TLSRPTv1; garbage", "v=TLSRPTv1x; rua=mailto:a@example.net",
                             "v=TLSRPTv1; rua=mailto:%0a@example.net", "v=TLSRPTv1; rua=https://:99/x",
                             "v=TLSRPTv1; rua=https://h.example:0/", "v=TLSRPTv1; rua=https://h.example:99999/",
                             "v=TLSRPTv1; rua=mailto:no-at-sign"}) {
        std::string error;
        EXPECT_FALSE(parse_record(text, error)) << text;
        EXPECT_FALSE(error.empty()) << text;
    }
}

TEST(tlsrpt_record, an_unknown_scheme_is_skipped_when_another_address_is_usable) {
    std::string error;
    const auto r = parse_record("v=TLSRPTv1; rua=ftp://x.example/r,mailto:a@example.net", error);
    ASSERT_TRUE(r) << error;
    ASSERT_EQ(r->rua.size(), 1u);
    EXPECT_EQ(r->rua[0].address, "a@example.net");
}

TEST(tlsrpt_record, exactly_one_record_counts_among_the_txt_records) {
    std::string error;
    // Records that do not start with the version are discarded.
    auto r = select_record({"google-site-verification=abc", "v=TLSRPTv1; rua=mailto:a@example.net"}, error);
    ASSERT_TRUE(r) << error;
    EXPECT_FALSE(select_record({"v=spf1 -all"}, error));
    EXPECT_EQ(error, "no v=TLSRPTv1 record");
    EXPECT_FALSE(select_record({"v=TLSRPTv1; rua=mailto:a@example.net", "v=TLSRPTv1; rua=mailto:b@example.net"}, error));
    EXPECT_EQ(error, "more than one v=TLSRPTv1 record");
    EXPECT_FALSE(select_record({"v=TLSRPTv1; rua=mailto:"}, error));
}

}  // namespace
}  // namespace postern::tlsrpt
