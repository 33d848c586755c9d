// The pure parts of app/postfix_instance: the main.cf and master.cf it writes, and how it
// reads Postfix's maillog and the Received header (lines as Postfix 3.7 writes them).
#include <gtest/gtest.h>

#include <sstream>
#include <string>

#include "lab/postfix_instance.hpp"

namespace postern::lab {
namespace {

postfix_settings demo_settings() {
    postfix_settings s;
    s.base = "/tmp/demo/b/postfix";
    s.hostname = "mx.b.demo.test";
    s.domain = "b.demo.test";
    s.mailboxes = {"bob"};
    s.smtpd_port = 42051;
    s.certificate = "/tmp/demo/b/postfix/etc/mx.b.demo.test.pem";
    s.ca_file = "/tmp/demo/ca/ca.pem";
    s.relay_domain = "a.demo.test";
    s.relay_address = "127.0.0.1";
    s.relay_port = 60125;
    s.relay_name = "mx.a.demo.test";
    return s;
}

bool has_line(const std::string& text, const std::string& line) {
    return ("\n" + text).find("\n" + line + "\n") != std::string::npos;
}

TEST(postfix_instance, main_cf_keeps_everything_under_the_base_directory) {
    const std::string cf = postfix_main_cf(demo_settings(), 65534, 65534);
    EXPECT_TRUE(has_line(cf, "queue_directory = /tmp/demo/b/postfix/queue"));
    EXPECT_TRUE(has_line(cf, "data_directory = /tmp/demo/b/postfix/data"));
    EXPECT_TRUE(has_line(cf, "maillog_file = /tmp/demo/b/postfix/maillog"));
    EXPECT_TRUE(has_line(cf, "maillog_file_prefixes = /tmp/demo/b/postfix"));
    EXPECT_TRUE(has_line(cf, "inet_interfaces = 127.0.0.1"));
    EXPECT_TRUE(has_line(cf, "mail_owner = postfix"));
    EXPECT_TRUE(has_line(cf, "virtual_mailbox_base = /tmp/demo/b/postfix/mail"));
    EXPECT_TRUE(has_line(cf, "virtual_uid_maps = static:65534"));
}

TEST(postfix_instance, main_cf_requires_tls_and_a_verified_client_certificate) {
    const std::string cf = postfix_main_cf(demo_settings(), 65534, 65534);
    EXPECT_TRUE(has_line(cf, "smtpd_tls_security_level = encrypt"));
    EXPECT_TRUE(has_line(cf, "smtpd_tls_cert_file = /tmp/demo/b/postfix/etc/mx.b.demo.test.pem"));
    EXPECT_TRUE(has_line(cf, "smtpd_tls_key_file = $smtpd_tls_cert_file"));
    EXPECT_TRUE(has_line(cf, "smtpd_tls_CAfile = /tmp/demo/ca/ca.pem"));
    EXPECT_TRUE(has_line(cf, "smtpd_tls_ask_ccert = yes"));
    EXPECT_TRUE(has_line(cf, "smtpd_tls_req_ccert = yes"));
    EXPECT_TRUE(has_line(cf, "smtpd_tls_received_header = yes"));
    EXPECT_TRUE(has_line(cf, "smtpd_tls_mandatory_protocols = >=TLSv1.2"));
}

TEST(postfix_instance, main_cf_sends_the_other_domain_only_to_a_verified_name) {
    std::string cf = postfix_main_cf(demo_settings(), 65534, 65534);
    EXPECT_TRUE(has_line(cf, "smtp_tls_security_level = secure"));
    EXPECT_TRUE(has_line(cf, "smtp_tls_secure_cert_match = mx.a.demo.test"));
    EXPECT_TRUE(has_line(cf, "smtp_tls_CAfile = /tmp/demo/ca/ca.pem"));
    EXPECT_TRUE(has_line(cf, "smtp_tls_cert_file = /tmp/demo/b/postfix/etc/mx.b.demo.test.pem"));
    EXPECT_TRUE(has_line(cf, "transport_maps = texthash:${config_directory}/transport"));

    auto s = demo_settings();
    s.relay_domain.clear();
    cf = postfix_main_cf(s, 65534, 65534);
    EXPECT_EQ(cf.find("smtp_tls_security_level"), std::string::npos);
    EXPECT_EQ(cf.find("transport_maps"), std::string::npos);
}

TEST(postfix_instance, master_cf_listens_on_loopback_and_chroots_nothing) {
    const std::string cf = postfix_master_cf(demo_settings());
    EXPECT_TRUE(has_line(cf, "127.0.0.1:42051 inet n - n - - smtpd"));
    EXPECT_NE(cf.find("postlogd"), std::string::npos);
    EXPECT_NE(cf.find("virtual"), std::string::npos);
    for (std::size_t at = 0; (at = cf.find('\n', at)) != std::string::npos;) {
        const std::string line = cf.substr(at + 1, cf.find('\n', at + 1) - at - 1);
        ++at;
        if (line.empty() || line[0] == '#') continue;
        std::istringstream fields(line);
        std::string service, type, priv, unpriv, chroot;
        fields >> service >> type >> priv >> unpriv >> chroot;
        EXPECT_EQ(chroot, "n") << line;
    }
}

const char* maillog_text =
    "Nov 29 09:42:41 mx postfix/master[29628]: daemon started -- version 3.7.11, configuration /x/etc\n"
    "Nov 29 09:42:47 mx postfix/smtpd[29772]: connect from localhost[127.0.0.1]\n"
    "Nov 29 09:42:47 mx postfix/smtpd[29772]: Trusted TLS connection established from localhost[127.0.0.1]: "
    "TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits) key-exchange X25519 server-signature ECDSA "
    "(prime256v1) server-digest SHA256 client-signature ECDSA (prime256v1) client-digest SHA256\n"
    "Nov 29 09:42:47 mx postfix/smtpd[29772]: A07EFA74219: client=localhost[127.0.0.1]\n"
    "Nov 29 09:42:47 mx postfix/cleanup[29775]: A07EFA74219: message-id=<1873b5983e42685dbf1de3c4@vm>\n"
    "Nov 29 09:42:47 mx postfix/qmgr[29630]: A07EFA74219: from=<alice@a.demo.test>, size=973, nrcpt=1 (queue active)\n"
    "Nov 29 09:42:47 mx postfix/virtual[29776]: A07EFA74219: to=<bob@b.demo.test>, relay=virtual, delay=0.03, "
    "delays=0.01/0.01/0/0.01, dsn=2.0.0, status=sent (delivered to maildir)\n"
    "Nov 29 09:43:20 mx postfix/pickup[30045]: 83319A74026: uid=0 from=<bob@b.demo.test>\n"
    "Nov 29 09:43:20 mx postfix/smtp[30054]: Verified TLS connection established to 127.0.0.1[127.0.0.1]:43157: "
    "TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits) key-exchange X25519\n"
    "Nov 29 09:43:20 mx postfix/smtp[30054]: 83319A74026: to=<alice@a.demo.test>, relay=127.0.0.1[127.0.0.1]:43157, "
    "delay=0.06, delays=0.02/0.02/0.01/0.01, dsn=2.0.0, status=sent (250 2.0.0 OK queued as 000661671fa31bc2)\n";

TEST(postfix_instance, maillog_lines_and_tls_events) {
    auto line = parse_maillog_line("Nov 29 09:42:47 mx postfix/smtpd[29772]: connect from localhost[127.0.0.1]");
    ASSERT_TRUE(line);
    EXPECT_EQ(line->program, "postfix/smtpd");
    EXPECT_EQ(line->pid, 29772);
    EXPECT_EQ(line->message, "connect from localhost[127.0.0.1]");
    EXPECT_FALSE(parse_tls_established(*line));
    EXPECT_FALSE(parse_maillog_line("not a maillog line"));

    auto tls = parse_maillog_line(
        "Nov 29 09:43:20 mx postfix/smtp[30054]: Untrusted TLS connection established to 127.0.0.1[127.0.0.1]:43157: "
        "TLSv1.2 with cipher ECDHE-ECDSA-AES256-GCM-SHA384 (256/256 bits)");
    ASSERT_TRUE(tls);
    auto e = parse_tls_established(*tls);
    ASSERT_TRUE(e);
    EXPECT_EQ(e->trust, "Untrusted");
    EXPECT_EQ(e->peer, "127.0.0.1[127.0.0.1]:43157");
    EXPECT_EQ(e->protocol, "TLSv1.2");
    EXPECT_EQ(e->cipher, "ECDHE-ECDSA-AES256-GCM-SHA384");
}

TEST(postfix_instance, a_received_message_is_tied_to_the_smtpd_session_that_took_it) {
    auto d = find_delivery(maillog_text, "bob@b.demo.test");
    ASSERT_TRUE(d);
    EXPECT_EQ(d->queue_id, "A07EFA74219");
    EXPECT_EQ(d->status, "sent");
    EXPECT_EQ(d->relay, "virtual");
    EXPECT_EQ(d->detail, "delivered to maildir");
    ASSERT_TRUE(d->tls_in);
    EXPECT_EQ(d->tls_in->trust, "Trusted");
    EXPECT_EQ(d->tls_in->peer, "localhost[127.0.0.1]");
    EXPECT_EQ(d->tls_in->protocol, "TLSv1.3");
    EXPECT_EQ(d->tls_in->cipher, "TLS_AES_256_GCM_SHA384");
    EXPECT_FALSE(d->tls_out);
}

TEST(postfix_instance, a_sent_message_is_tied_to_the_smtp_session_that_carried_it) {
    auto d = find_delivery(maillog_text, "alice@a.demo.test");
    ASSERT_TRUE(d);
    EXPECT_EQ(d->queue_id, "83319A74026");
    EXPECT_EQ(d->status, "sent");
    EXPECT_EQ(d->relay, "127.0.0.1[127.0.0.1]:43157");
    EXPECT_EQ(d->detail, "250 2.0.0 OK queued as 000661671fa31bc2");
    ASSERT_TRUE(d->tls_out);
    EXPECT_EQ(d->tls_out->trust, "Verified");
    EXPECT_FALSE(d->tls_in);   // posted with sendmail: no smtpd session
    EXPECT_FALSE(find_delivery(maillog_text, "carol@b.demo.test"));
}

TEST(postfix_instance, a_plaintext_session_gives_no_tls_event) {
    const std::string log =
        "Nov 29 09:42:47 mx postfix/smtpd[100]: Trusted TLS connection established from localhost[127.0.0.1]: "
        "TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)\n"
        "Nov 29 09:42:47 mx postfix/smtpd[100]: disconnect from localhost[127.0.0.1]\n"
        "Nov 29 09:42:48 mx postfix/smtpd[100]: connect from localhost[127.0.0.1]\n"
        "Nov 29 09:42:48 mx postfix/smtpd[100]: B1: client=localhost[127.0.0.1]\n"
        "Nov 29 09:42:48 mx postfix/virtual[101]: B1: to=<bob@b.demo.test>, relay=virtual, status=sent (delivered)\n";
    auto d = find_delivery(log, "bob@b.demo.test");
    ASSERT_TRUE(d);
    EXPECT_FALSE(d->tls_in);   // the earlier session of the same smtpd process does not count
}

TEST(postfix_instance, received_header_tls_facts) {
    const std::string message =
        "Return-Path: <alice@a.demo.test>\r\n"
        "Received: from mx.a.demo.test (localhost [127.0.0.1])\r\n"
        "\t(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)\r\n"
        "\t key-exchange X25519 server-signature ECDSA (prime256v1) server-digest SHA256\r\n"
        "\t client-signature ECDSA (prime256v1) client-digest SHA256)\r\n"
        "\t(Client CN \"mx.a.demo.test\", Issuer \"Postern Demo Root CA\" (verified OK))\r\n"
        "\tby mx.b.demo.test (Postfix) with ESMTPS id A07EFA74219\r\n"
        "\tfor <bob@b.demo.test>; Sun, 29 Nov 2026 09:42:47 +0000 (UTC)\r\n"
        "Received: from vm ([127.0.0.1])\r\n"
        "\tby mx.a.demo.test (Postern) with ESMTPS id 000661671DABEA44.1\r\n"
        "Subject: test\r\n"
        "\r\n"
        "Received: (using TLSv1.0 with cipher RC4) in the body does not count\r\n";
    auto r = parse_received_tls(message);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->protocol, "TLSv1.3");
    EXPECT_EQ(r->cipher, "TLS_AES_256_GCM_SHA384");
    EXPECT_EQ(r->client_cn, "mx.a.demo.test");
    EXPECT_EQ(r->client_issuer, "Postern Demo Root CA");
    EXPECT_TRUE(r->client_verified);
    EXPECT_EQ(r->header.rfind("Received: from mx.a.demo.test (localhost [127.0.0.1]) (using TLSv1.3", 0), 0u);

    auto unverified = parse_received_tls(
        "Received: from x (using TLSv1.2 with cipher ECDHE-RSA-AES128-GCM-SHA256 (128/128 bits))\r\n"
        "\t(Client CN \"x\", Issuer \"y\" (not verified))\r\n\r\n");
    ASSERT_TRUE(unverified);
    EXPECT_FALSE(unverified->client_verified);
    EXPECT_FALSE(parse_received_tls("Received: from x by y with ESMTP\r\n\r\nbody\r\n"));
}

}  // namespace
}  // namespace postern::lab
