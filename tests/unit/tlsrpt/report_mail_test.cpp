// RFC 8460 §5.1 (file name, gzip) and §5.3 (the report mail).
#include "tlsrpt/report_mail.hpp"

#include <zlib.h>

#include <gtest/gtest.h>

namespace postern::tlsrpt {
namespace {

std::string gunzip(const std::string& in) {
    z_stream z{};
    EXPECT_EQ(inflateInit2(&z, 15 + 16), Z_OK);
    std::string out(1 << 20, '\0');
    z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
    z.avail_in = static_cast<uInt>(in.size());
    z.next_out = reinterpret_cast<Bytef*>(out.data());
    z.avail_out = static_cast<uInt>(out.size());
    EXPECT_EQ(inflate(&z, Z_FINISH), Z_STREAM_END);
    out.resize(out.size() - z.avail_out);
    inflateEnd(&z);
    return out;
}

smtp::sys_time at(long long seconds) { return smtp::sys_time(std::chrono::seconds(seconds)); }

TEST(tlsrpt_mail, gzip_is_rfc1952_and_round_trips) {
    const std::string json = R"({"organization-name":"Example","policies":[]})";
    const auto z = gzip(json);
    ASSERT_GE(z.size(), 18u);
    EXPECT_EQ(static_cast<unsigned char>(z[0]), 0x1f);   // the gzip magic
    EXPECT_EQ(static_cast<unsigned char>(z[1]), 0x8b);
    EXPECT_EQ(gunzip(z), json);
    EXPECT_EQ(gunzip(gzip("")), "");
}

TEST(tlsrpt_mail, file_name_follows_section_5_1) {
    EXPECT_EQ(report_filename("mx.sender.test", "example.net", at(1764720000), at(1764806400), "a1-b2"),
              "mx.sender.test!example.net!1764720000!1764806400!a1b2.json.gz");
    EXPECT_EQ(report_filename("mx.sender.test", "example.net", at(1), at(2), ""), "mx.sender.test!example.net!1!2.json.gz");
}

TEST(tlsrpt_mail, message_has_the_report_headers_and_the_gzipped_attachment) {
    report_mail m;
    m.from = "noreply-tls-reports@mx.sender.test";
    m.to = {"tlsrpt@example.net", "second@example.net"};
    m.policy_domain = "example.net";
    m.submitter = "mx.sender.test";
    m.report_id = "20261203T000000Z.example.net.abc@mx.sender.test";
    m.start = at(1764720000);
    m.end = at(1764806400);
    m.now = at(1764806401);
    m.filename = "mx.sender.test!example.net!1764720000!1764806400!abc.json.gz";
    m.gzipped = gzip(std::string(5000, 'x'));
    m.unique = "abc";
    const auto text = compose(m);
    const auto headers = text.substr(0, text.find("\r\n\r\n"));
    EXPECT_NE(headers.find("From: <noreply-tls-reports@mx.sender.test>\r\n"), std::string::npos);
    EXPECT_NE(headers.find("To: <tlsrpt@example.net>, <second@example.net>\r\n"), std::string::npos);
    std::string unfolded = headers;   // RFC 5322 §2.2.3
    for (std::size_t at; (at = unfolded.find("\r\n ")) != std::string::npos;) unfolded.erase(at, 2);
    EXPECT_NE(unfolded.find("Subject: Report Domain: example.net Submitter: mx.sender.test Report-ID: "
                            "<20261203T000000Z.example.net.abc@mx.sender.test>\r\n"),
              std::string::npos)
        << headers;
    EXPECT_NE(headers.find("TLS-Report-Domain: example.net\r\n"), std::string::npos);
    EXPECT_NE(headers.find("TLS-Report-Submitter: mx.sender.test\r\n"), std::string::npos);
    EXPECT_NE(headers.find("TLS-Required: No\r\n"), std::string::npos);
    EXPECT_NE(headers.find("Content-Type: multipart/report; report-type=\"tlsrpt\""), std::string::npos);
    EXPECT_NE(text.find("Content-Type: application/tlsrpt+gzip\r\n"), std::string::npos);
    EXPECT_NE(text.find("filename=\"" + m.filename + "\""), std::string::npos);
    EXPECT_NE(text.find("\r\n--tlsrpt-abc--\r\n"), std::string::npos);
    // Lines within RFC 5322's 78 (base64 lines are 76).
    std::size_t start = 0;
    while (start < text.size()) {
        const auto end = text.find("\r\n", start);
        ASSERT_NE(end, std::string::npos);
        EXPECT_LE(end - start, 78u) << text.substr(start, end - start);
        start = end + 2;
    }
}

}  // namespace
}  // namespace postern::tlsrpt
