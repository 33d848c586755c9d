// MAIL FROM / RCPT TO arguments (RFC 5321 §4.1.2, RFC 6531, RFC 3461, RFC 1870).
#include <gtest/gtest.h>

#include "smtp/address.hpp"

using namespace postern::smtp;

TEST(parse_mail_from, plain_and_null_paths) {
    auto r = parse_mail_from("FROM:<alice@example.test>");
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r.value.address, "alice@example.test");
    auto n = parse_mail_from("FROM:<>");
    ASSERT_TRUE(n.ok());
    EXPECT_EQ(n.value.address, "");
    EXPECT_TRUE(parse_mail_from("from: <alice@example.test>").ok());
}

TEST(parse_mail_from, quoted_local_part_keeps_its_quotes) {
    auto r = parse_mail_from(R"(FROM:<"john \"q\" doe>x"@example.test>)");
    ASSERT_TRUE(r.ok()) << r.detail;
    EXPECT_EQ(r.value.address, R"("john \"q\" doe>x"@example.test)");
}

TEST(parse_mail_from, source_route_is_ignored) {
    auto r = parse_mail_from("FROM:<@relay1.test,@relay2.test:bob@example.test>");
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r.value.address, "bob@example.test");
}

TEST(parse_mail_from, address_literals) {
    EXPECT_TRUE(parse_mail_from("FROM:<a@[192.0.2.1]>").ok());
    EXPECT_TRUE(parse_mail_from("FROM:<a@[IPv6:2001:db8::1]>").ok());
    EXPECT_FALSE(parse_mail_from("FROM:<a@[192.0.2.256]>").ok());
    EXPECT_FALSE(parse_mail_from("FROM:<a@[IPv6:zz::1]>").ok());
}

TEST(parse_mail_from, malformed_addresses) {
    for (const char* bad : {"FROM:<a@>", "FROM:<@b.test>", "FROM:<a..b@c.test>", "FROM:<.a@c.test>",
                            "FROM:<a@-c.test>", "FROM:<a@c..test>", "FROM:<a b@c.test>", "FROM:<a@c.test"}) {
        SCOPED_TRACE(bad);
        EXPECT_FALSE(parse_mail_from(bad).ok());
    }
    EXPECT_EQ(parse_mail_from("FROM:a@c.test").error, address_error::syntax);
    EXPECT_EQ(parse_mail_from("TO:<a@c.test>").error, address_error::syntax);
    EXPECT_EQ(parse_mail_from("FROM:<a@c.test>SIZE=1").error, address_error::syntax);
    EXPECT_EQ(parse_mail_from("FROM:<" + std::string(65, 'a') + "@c.test>").error, address_error::bad_address);
}

TEST(parse_mail_from, parameters) {
    auto r = parse_mail_from("FROM:<a@b.test> SIZE=12345 BODY=8bitmime RET=hdrs ENVID=QQ+2B1");
    ASSERT_TRUE(r.ok()) << r.detail;
    EXPECT_EQ(*r.value.size, 12345u);
    EXPECT_EQ(r.value.body, body_type::eight_bit_mime);
    EXPECT_EQ(r.value.ret, "HDRS");
    EXPECT_EQ(r.value.envid, "QQ+2B1");
    EXPECT_EQ(parse_mail_from("FROM:<a@b.test> SIZE=x").error, address_error::bad_parameter);
    EXPECT_EQ(parse_mail_from("FROM:<a@b.test> SIZE=99999999999999999999999").error, address_error::bad_parameter);
    EXPECT_EQ(parse_mail_from("FROM:<a@b.test> SIZE=1 SIZE=2").error, address_error::bad_parameter);
    EXPECT_EQ(parse_mail_from("FROM:<a@b.test> BODY=BINARYMIME").error, address_error::bad_parameter);
    EXPECT_EQ(parse_mail_from("FROM:<a@b.test> AUTH=<>").error, address_error::unsupported_parameter);
    EXPECT_EQ(parse_mail_from("FROM:<a@b.test> ENVID=a+zz").error, address_error::bad_parameter);
    EXPECT_EQ(parse_mail_from("FROM:<a@b.test> SMTPUTF8=yes").error, address_error::bad_parameter);
}

TEST(parse_mail_from, utf8_only_with_smtputf8) {
    EXPECT_EQ(parse_mail_from("FROM:<jöran@bücher.test>").error, address_error::utf8_not_allowed);
    auto r = parse_mail_from("FROM:<jöran@bücher.test> SMTPUTF8");
    ASSERT_TRUE(r.ok()) << r.detail;
    EXPECT_TRUE(r.value.smtputf8);
    EXPECT_FALSE(parse_mail_from("FROM:<j\xC3@b.test> SMTPUTF8").ok());     // truncated sequence
    EXPECT_FALSE(parse_mail_from("FROM:<j\xC0\xAF@b.test> SMTPUTF8").ok()); // overlong
}

TEST(parse_rcpt_to, postmaster_and_dsn_parameters) {
    auto p = parse_rcpt_to("TO:<Postmaster>", false);
    ASSERT_TRUE(p.ok());
    EXPECT_TRUE(p.value.postmaster);
    auto r = parse_rcpt_to("TO:<bob@example.test> NOTIFY=success,delay ORCPT=rfc822;bob@example.test", false);
    ASSERT_TRUE(r.ok()) << r.detail;
    EXPECT_EQ(r.value.notify, "SUCCESS,DELAY");
    EXPECT_EQ(r.value.orcpt, "rfc822;bob@example.test");
    EXPECT_EQ(parse_rcpt_to("TO:<b@e.test> NOTIFY=NEVER,SUCCESS", false).error, address_error::bad_parameter);
    EXPECT_EQ(parse_rcpt_to("TO:<b@e.test> NOTIFY=SUCCESS,SUCCESS", false).error, address_error::bad_parameter);
    EXPECT_EQ(parse_rcpt_to("TO:<b@e.test> ORCPT=rfc822", false).error, address_error::bad_parameter);
    EXPECT_EQ(parse_rcpt_to("TO:<b@e.test> SIZE=1", false).error, address_error::unsupported_parameter);
    EXPECT_EQ(parse_rcpt_to("TO:<>", false).error, address_error::bad_address);
}

TEST(parse_rcpt_to, utf8_follows_the_transaction) {
    EXPECT_EQ(parse_rcpt_to("TO:<δοκιμή@παράδειγμα.test>", false).error, address_error::utf8_not_allowed);
    EXPECT_TRUE(parse_rcpt_to("TO:<δοκιμή@παράδειγμα.test>", true).ok());
}

TEST(parse_rcpt_to, path_length_limit) {
    std::string local(64, 'a');
    std::string domain;
    while (domain.size() < 200) domain += "abcdefghij.";
    domain += "test";
    EXPECT_EQ(parse_rcpt_to("TO:<" + local + "@" + domain + ">", false).error, address_error::bad_address);
}

TEST(domain_of, lower_cases) {
    EXPECT_EQ(domain_of("a@Example.TEST"), "example.test");
    EXPECT_EQ(domain_of("\"x@y\"@z.test"), "z.test");
    EXPECT_EQ(domain_of("postmaster"), "");
}

TEST(xtext_encode, plus_equals_space_controls_and_non_ascii_are_hex) {
    EXPECT_EQ(xtext_encode("bob@example.test"), "bob@example.test");
    EXPECT_EQ(xtext_encode("a+b=c"), "a+2Bb+3Dc");
    EXPECT_EQ(xtext_encode("\"a b\"@x"), "\"a+20b\"@x");
    EXPECT_EQ(xtext_encode(std::string("\x01\x7f\xc3\xa9", 4)), "+01+7F+C3+A9");
    EXPECT_EQ(xtext_encode(""), "");
    // What we encode, our own parser accepts as ORCPT xtext.
    auto r = parse_rcpt_to("TO:<x@y.test> ORCPT=rfc822;" + xtext_encode("a+b=c d@y.test"), false);
    EXPECT_TRUE(r.ok()) << r.detail;
}
