// server_fsm: whole dialogues through resume(), no I/O (STYLE E12, first level).
#include <gtest/gtest.h>

#include <algorithm>

#include <fmt/format.h>

#include "smtp/server_fsm.hpp"

using namespace postern::smtp;
using postern::smtp::envelope;

namespace {

server_policy test_policy() {
    server_policy p;
    p.hostname = "mx.example.test";
    p.connector_name = "inbound";
    p.accepted_domains = {"example.test"};
    p.max_message_size = 10000;
    p.max_recipients = 3;
    p.max_protocol_errors = 20;
    return p;
}

tls_summary tls_with(bool presented, bool verified, bool partner) {
    tls_summary s;
    s.protocol = "TLSv1.3";
    s.cipher = "TLS_AES_256_GCM_SHA384";
    s.cipher_bits = 256;
    s.certificate_presented = presented;
    s.certificate_verified = verified;
    if (presented) {
        s.subject = "CN=partner.test";
        s.issuer = "CN=Lab Root";
        s.sha256 = "ab12";
    }
    if (presented && !verified) s.verify_error = "unable to get local issuer certificate";
    s.partner = partner;
    if (!partner) s.partner_reason = presented ? "matches no partner name" : "no client certificate";
    return s;
}

struct harness {
    server_fsm fsm;
    action last;
    std::vector<log_entry> log;
    std::vector<std::pair<envelope, std::string>> committed;
    bool commit_succeeds = true;
    bool storage_low = false;

    explicit harness(server_policy p = test_policy(), admission a = admission::normal, bool tls_available = true)
        : fsm(make(std::move(p), a, tls_available, this)) {}

    static session_params make(server_policy p, admission a, bool tls_available, harness* self) {
        session_params s;
        s.policy = std::move(p);
        s.admitted = a;
        s.session_id = "0000000000000001";
        s.client_ip = "192.0.2.7";
        s.client_port = 40000;
        s.tls_available = tls_available;
        s.storage_low = [self] { return self->storage_low; };
        s.clock = [] { return std::chrono::system_clock::time_point(std::chrono::seconds(1700000000)); };
        return s;
    }

    std::string settle() {
        std::string out;
        for (;;) {
            out += last.out;
            log.insert(log.end(), last.log.begin(), last.log.end());
            if (last.what != action::kind::commit) return out;
            committed.emplace_back(last.envelope, last.body);
            last = fsm.resume(event::commit_result(commit_succeeds, fmt::format("Q{}", committed.size()),
                                                   "rocksdb: IO error: No space left on device"));
        }
    }
    std::string resume(const event& e) {
        last = fsm.resume(e);
        return settle();
    }
    std::string connect(std::optional<tls_summary> implicit = std::nullopt) { return resume(event::connected(implicit)); }
    std::string send(std::string_view bytes) { return resume(event::bytes(bytes)); }
    std::string line(std::string_view l) { return send(std::string(l) + "\r\n"); }
    bool closed() const { return last.what == action::kind::close; }
    bool logged(std::string_view part) const {
        return std::any_of(log.begin(), log.end(), [&](const log_entry& e) { return e.text.find(part) != std::string::npos; });
    }
};

bool starts(const std::string& s, std::string_view prefix) { return s.rfind(prefix, 0) == 0; }

}  // namespace

TEST(server_fsm, command_table_flags) {
    auto find = [](std::string_view verb) {
        for (const auto& c : server_fsm::commands())
            if (c.verb == verb) return c.flags;
        return ~0u;
    };
    EXPECT_TRUE(find("EHLO") & pre_tls);
    EXPECT_TRUE(find("STARTTLS") & pre_tls);
    EXPECT_TRUE(find("QUIT") & any_time);
    EXPECT_FALSE(find("MAIL") & pre_tls);
    EXPECT_FALSE(find("RCPT") & pre_tls);
    EXPECT_FALSE(find("DATA") & pre_tls);
    EXPECT_TRUE(find("DATA") & ends_group);
}

TEST(server_fsm, one_message_end_to_end) {
    harness t;
    EXPECT_EQ(t.connect(), "220 mx.example.test ESMTP Postern\r\n");
    EXPECT_EQ(t.line("EHLO client.test"),
              "250-mx.example.test\r\n250-PIPELINING\r\n250-SIZE 10000\r\n250-8BITMIME\r\n"
              "250-ENHANCEDSTATUSCODES\r\n250-SMTPUTF8\r\n250-DSN\r\n250 STARTTLS\r\n");
    EXPECT_EQ(t.line("MAIL FROM:<alice@client.test> BODY=8BITMIME ENVID=x1 RET=FULL"), "250 2.1.0 Sender OK\r\n");
    EXPECT_EQ(t.line("RCPT TO:<bob@Example.TEST> ORCPT=rfc822;bob@example.test"), "250 2.1.5 Recipient OK\r\n");
    EXPECT_EQ(t.line("DATA"), "354 End data with <CR><LF>.<CR><LF>\r\n");
    EXPECT_TRUE(t.fsm.in_data());
    EXPECT_EQ(t.send("Subject: hi\r\n\r\n..hello\r\n.\r\n"), "250 2.0.0 OK queued as Q1\r\n");
    ASSERT_EQ(t.committed.size(), 1u);
    const auto& [env, body] = t.committed[0];
    EXPECT_EQ(env.mail_from, "alice@client.test");
    ASSERT_EQ(env.recipients.size(), 1u);
    EXPECT_EQ(env.recipients[0].address, "bob@Example.TEST");
    EXPECT_EQ(env.recipients[0].orcpt, "rfc822;bob@example.test");
    EXPECT_TRUE(env.body_8bit);
    EXPECT_EQ(env.envid, "x1");
    EXPECT_EQ(env.ret, "FULL");
    EXPECT_EQ(env.client_address, "192.0.2.7:40000");
    EXPECT_EQ(env.client_helo, "client.test");
    EXPECT_EQ(env.receive_connector, "inbound");
    EXPECT_EQ(env.session_id, "0000000000000001");
    EXPECT_EQ(body,
              "Received: from client.test ([192.0.2.7])\r\n"
              "\tby mx.example.test (Postern) with ESMTP id 0000000000000001.1\r\n"
              "\tfor <bob@Example.TEST>; Tue, 14 Nov 2023 22:13:20 +0000\r\n"
              "Subject: hi\r\n\r\n.hello\r\n");
    EXPECT_EQ(t.line("QUIT"), "221 2.0.0 mx.example.test Bye\r\n");
    EXPECT_TRUE(t.closed());
    EXPECT_EQ(t.fsm.messages_accepted(), 1u);
}

// RFC 3461: NOTIFY and ORCPT are kept per recipient, RET and ENVID per message, so the
// delivery side can pass them on and honour them in its own DSNs.
TEST(server_fsm, dsn_parameters_reach_the_queued_envelope) {
    harness t;
    t.connect();
    t.line("EHLO client.test");
    EXPECT_EQ(t.line("MAIL FROM:<alice@client.test> RET=HDRS ENVID=QQ+2B1"), "250 2.1.0 Sender OK\r\n");
    EXPECT_EQ(t.line("RCPT TO:<bob@example.test> NOTIFY=success,Delay ORCPT=rfc822;bob+2Bx@example.test"),
              "250 2.1.5 Recipient OK\r\n");
    EXPECT_EQ(t.line("RCPT TO:<carol@example.test> NOTIFY=NEVER"), "250 2.1.5 Recipient OK\r\n");
    EXPECT_EQ(t.line("RCPT TO:<dave@example.test>"), "250 2.1.5 Recipient OK\r\n");
    t.line("DATA");
    EXPECT_EQ(t.send("Subject: hi\r\n\r\nhello\r\n.\r\n"), "250 2.0.0 OK queued as Q1\r\n");
    ASSERT_EQ(t.committed.size(), 1u);
    const auto& env = t.committed[0].first;
    EXPECT_EQ(env.ret, "HDRS");
    EXPECT_EQ(env.envid, "QQ+2B1");
    ASSERT_EQ(env.recipients.size(), 3u);
    EXPECT_EQ(env.recipients[0].notify, "SUCCESS,DELAY");       // upper case, order as given
    EXPECT_EQ(env.recipients[0].orcpt, "rfc822;bob+2Bx@example.test");
    EXPECT_EQ(env.recipients[1].notify, "NEVER");
    EXPECT_EQ(env.recipients[1].orcpt, "");
    EXPECT_EQ(env.recipients[2].notify, "");                    // absent: RFC 3461 §4.1 default

    // A new transaction on the same session starts without the previous parameters.
    t.line("MAIL FROM:<alice@client.test>");
    t.line("RCPT TO:<bob@example.test>");
    t.line("DATA");
    EXPECT_EQ(t.send("Subject: again\r\n\r\nhello\r\n.\r\n"), "250 2.0.0 OK queued as Q2\r\n");
    ASSERT_EQ(t.committed.size(), 2u);
    EXPECT_EQ(t.committed[1].first.recipients[0].notify, "");
    EXPECT_EQ(t.committed[1].first.ret, "");
    EXPECT_EQ(t.committed[1].first.envid, "");
}

TEST(server_fsm, pipelined_group_gets_replies_in_order) {
    harness t;
    t.connect();
    t.line("EHLO client.test");
    EXPECT_EQ(t.send("MAIL FROM:<a@client.test>\r\nRCPT TO:<b@example.test>\r\nRCPT TO:<c@other.test>\r\n"
                     "RCPT TO:<d@example.test>\r\nDATA\r\n"),
              "250 2.1.0 Sender OK\r\n250 2.1.5 Recipient OK\r\n550 5.7.1 Relay access denied\r\n"
              "250 2.1.5 Recipient OK\r\n354 End data with <CR><LF>.<CR><LF>\r\n");
    EXPECT_EQ(t.send("x\r\n.\r\nQUIT\r\n"), "250 2.0.0 OK queued as Q1\r\n221 2.0.0 mx.example.test Bye\r\n");
    EXPECT_EQ(t.committed.at(0).first.recipients.size(), 2u);
}

TEST(server_fsm, data_sent_with_the_data_command_is_message_text) {
    harness t;
    t.connect();
    EXPECT_EQ(t.send("EHLO c\r\nMAIL FROM:<a@c.test>\r\nRCPT TO:<b@example.test>\r\nDATA\r\nhello\r\n.\r\nQUIT\r\n"),
              "250-mx.example.test\r\n250-PIPELINING\r\n250-SIZE 10000\r\n250-8BITMIME\r\n"
              "250-ENHANCEDSTATUSCODES\r\n250-SMTPUTF8\r\n250-DSN\r\n250 STARTTLS\r\n"
              "250 2.1.0 Sender OK\r\n250 2.1.5 Recipient OK\r\n354 End data with <CR><LF>.<CR><LF>\r\n"
              "250 2.0.0 OK queued as Q1\r\n221 2.0.0 mx.example.test Bye\r\n");
    EXPECT_TRUE(t.logged("improper command pipelining after EHLO"));
}

TEST(server_fsm, require_tls_refuses_mail_before_starttls) {
    auto p = test_policy();
    p.require_tls = true;
    harness t(p);
    t.connect();
    t.line("EHLO client.test");
    EXPECT_EQ(t.line("MAIL FROM:<a@client.test>"), "530 5.7.0 Must issue a STARTTLS command first\r\n");
    EXPECT_EQ(t.line("RCPT TO:<b@example.test>"), "530 5.7.0 Must issue a STARTTLS command first\r\n");
    EXPECT_EQ(t.line("DATA"), "530 5.7.0 Must issue a STARTTLS command first\r\n");
    EXPECT_EQ(t.line("NOOP"), "250 2.0.0 OK\r\n");
    EXPECT_EQ(t.line("STARTTLS"), "220 2.0.0 Ready to start TLS\r\n");
    EXPECT_EQ(t.last.what, action::kind::start_tls);
    EXPECT_EQ(t.resume(event::tls_established(tls_with(false, false, false))), "");
    EXPECT_EQ(t.line("MAIL FROM:<a@client.test>"), "503 5.5.1 Send EHLO or HELO first\r\n");
    auto ehlo = t.line("EHLO client.test");
    EXPECT_EQ(ehlo.find("STARTTLS"), std::string::npos);
    EXPECT_EQ(t.line("MAIL FROM:<a@client.test>"), "250 2.1.0 Sender OK\r\n");
    EXPECT_EQ(t.line("STARTTLS"), "503 5.5.1 TLS already active\r\n");
}

TEST(server_fsm, starttls_injection_is_discarded) {
    harness t;
    t.connect();
    t.line("EHLO client.test");
    // CVE-2011-0411: commands sent in the same packet as STARTTLS.
    EXPECT_EQ(t.send("STARTTLS\r\nMAIL FROM:<evil@x.test>\r\nRCPT TO:<victim@example.test>\r\n"),
              "220 2.0.0 Ready to start TLS\r\n");
    EXPECT_EQ(t.last.what, action::kind::start_tls);
    EXPECT_TRUE(t.logged("discarded 56 octets pipelined after STARTTLS"));
    EXPECT_EQ(t.resume(event::tls_established(tls_with(false, false, false))), "");
    EXPECT_EQ(t.last.what, action::kind::read);
    EXPECT_FALSE(t.fsm.in_transaction());
    EXPECT_EQ(t.line("RCPT TO:<b@example.test>"), "503 5.5.1 Need MAIL command first\r\n");
}

TEST(server_fsm, starttls_not_offered_or_unavailable) {
    auto p = test_policy();
    p.tls = server_policy::tls_offer::none;
    harness none(p);
    none.connect();
    EXPECT_EQ(none.line("EHLO c").find("STARTTLS"), std::string::npos);
    EXPECT_EQ(none.line("STARTTLS"), "502 5.5.1 Command not implemented\r\n");
    harness nocontext(test_policy(), admission::normal, false);
    nocontext.connect();
    EXPECT_EQ(nocontext.line("EHLO c").find("STARTTLS"), std::string::npos);
    EXPECT_EQ(nocontext.line("STARTTLS"), "454 4.7.0 TLS not available due to temporary reason\r\n");
    harness args;
    args.connect();
    EXPECT_EQ(args.line("STARTTLS now"), "501 5.5.4 Syntax error, no parameters allowed\r\n");
}

TEST(server_fsm, failed_handshake_closes_silently) {
    harness t;
    t.connect();
    t.line("STARTTLS");
    EXPECT_EQ(t.resume(event::tls_failure("wrong version number")), "");
    EXPECT_TRUE(t.closed());
    EXPECT_TRUE(t.logged("TLS handshake failed: wrong version number"));
}

TEST(server_fsm, mutual_tls_without_partner_certificate) {
    auto p = test_policy();
    p.require_tls = true;
    p.mutual_tls = true;
    harness t(p);
    t.connect();
    t.line("EHLO c");
    t.line("STARTTLS");
    t.resume(event::tls_established(tls_with(true, false, false)));
    EXPECT_TRUE(t.logged("verified=no (unable to get local issuer certificate)"));
    EXPECT_TRUE(t.logged("not a partner (matches no partner name)"));
    EXPECT_EQ(t.line("EHLO c"), "554 5.7.0 Client certificate required\r\n");
    EXPECT_EQ(t.line("MAIL FROM:<a@c.test>"), "554 5.7.0 Client certificate required\r\n");
    EXPECT_EQ(t.line("QUIT"), "221 2.0.0 mx.example.test Bye\r\n");
}

TEST(server_fsm, mutual_tls_partner_may_relay_when_partners_have_the_permission) {
    auto p = test_policy();
    p.require_tls = true;
    p.mutual_tls = true;
    p.relay_for_partners = true;
    harness t(p);
    t.connect();
    t.line("EHLO c");
    t.line("STARTTLS");
    t.resume(event::tls_established(tls_with(true, true, true)));
    EXPECT_TRUE(starts(t.line("EHLO c"), "250-"));
    t.line("MAIL FROM:<a@partner.test>");
    EXPECT_EQ(t.line("RCPT TO:<x@elsewhere.test>"), "250 2.1.5 Recipient OK\r\n");
    t.line("DATA");
    t.send("x\r\n.\r\n");
    ASSERT_EQ(t.committed.size(), 1u);
    EXPECT_NE(t.committed[0].second.find("with ESMTPS id"), std::string::npos);
    EXPECT_NE(t.committed[0].second.find("(version=TLSv1.3 cipher=TLS_AES_256_GCM_SHA384 bits=256 verify=OK)"),
              std::string::npos);
}

TEST(server_fsm, relay_control) {
    harness closed;
    closed.connect();
    closed.line("EHLO c");
    closed.line("MAIL FROM:<a@c.test>");
    EXPECT_EQ(closed.line("RCPT TO:<x@elsewhere.test>"), "550 5.7.1 Relay access denied\r\n");
    EXPECT_EQ(closed.line("RCPT TO:<x@[192.0.2.1]>"), "550 5.7.1 Relay access denied\r\n");
    EXPECT_EQ(closed.line("RCPT TO:<Postmaster>"), "250 2.1.5 Recipient OK\r\n");
    EXPECT_TRUE(closed.logged("relay denied: domain elsewhere.test"));

    auto p = test_policy();
    p.relay_for_anonymous = true;
    harness open(p);
    open.connect();
    open.line("EHLO c");
    open.line("MAIL FROM:<a@c.test>");
    EXPECT_EQ(open.line("RCPT TO:<x@elsewhere.test>"), "250 2.1.5 Recipient OK\r\n");

    auto q = test_policy();
    q.relay_for_partners = true;                 // but this client is not a partner
    harness partners_only(q);
    partners_only.connect();
    partners_only.line("EHLO c");
    partners_only.line("MAIL FROM:<a@c.test>");
    EXPECT_EQ(partners_only.line("RCPT TO:<x@elsewhere.test>"), "550 5.7.1 Relay access denied\r\n");
}

TEST(server_fsm, sender_specified_routing_is_refused_without_relay_permission) {
    const std::string denied = "550 5.7.1 Relay access denied: sender-specified routing is not allowed\r\n";
    const std::string ok = "250 2.1.5 Recipient OK\r\n";
    harness t;
    t.connect();
    t.line("EHLO c");
    t.line("MAIL FROM:<a@c.test>");
    EXPECT_EQ(t.line("RCPT TO:<user%elsewhere.test@example.test>"), denied);
    EXPECT_EQ(t.line("RCPT TO:<\"user@elsewhere.test\"@example.test>"), denied);
    EXPECT_EQ(t.line("RCPT TO:<elsewhere.test!user@example.test>"), denied);
    EXPECT_EQ(t.line("RCPT TO:<USER%elsewhere.test@EXAMPLE.TEST>"), denied);
    EXPECT_EQ(t.line("RCPT TO:<plain.user@example.test>"), ok);
    EXPECT_TRUE(t.logged("routes elsewhere"));
    EXPECT_EQ(t.fsm.protocol_errors(), 0u);       // a policy refusal, not a protocol error

    auto relay = test_policy();
    relay.relay_for_anonymous = true;             // a client that may relay may route
    harness r(relay);
    r.connect();
    r.line("EHLO c");
    r.line("MAIL FROM:<a@c.test>");
    EXPECT_EQ(r.line("RCPT TO:<user%elsewhere.test@example.test>"), ok);

    auto allowed = test_policy();
    allowed.allow_untrusted_routing = true;
    harness a(allowed);
    a.connect();
    a.line("EHLO c");
    a.line("MAIL FROM:<a@c.test>");
    EXPECT_EQ(a.line("RCPT TO:<elsewhere.test!user@example.test>"), ok);
}

TEST(server_fsm, junk_commands_past_the_limit_close_the_session) {
    auto p = test_policy();
    p.max_junk_commands = 6;
    harness t(p);
    t.connect();
    EXPECT_TRUE(starts(t.line("EHLO c"), "250"));              // the first EHLO is not junk
    for (auto verb : {"NOOP", "RSET", "HELP", "VRFY bob", "NOOP", "EHLO again"}) EXPECT_FALSE(starts(t.line(verb), "421")) << verb;
    EXPECT_EQ(t.fsm.junk_commands(), 6u);
    EXPECT_EQ(t.line("NOOP"), "421 4.7.0 mx.example.test Too many commands without a message, closing connection\r\n");
    EXPECT_TRUE(t.closed());
    EXPECT_TRUE(t.logged("max_junk_commands 6"));
}

TEST(server_fsm, junk_count_starts_again_after_each_accepted_message) {
    auto p = test_policy();
    p.max_junk_commands = 3;
    harness t(p);
    t.connect();
    t.line("EHLO c");
    for (int message = 0; message < 5; ++message) {
        t.line("RSET");
        t.line("NOOP");
        t.line("RSET");
        t.line("MAIL FROM:<a@c.test>");
        t.line("RCPT TO:<b@example.test>");
        t.line("DATA");
        EXPECT_TRUE(starts(t.send("Subject: x\r\n\r\nhi\r\n.\r\n"), "250 2.0.0 OK queued")) << message;
        EXPECT_EQ(t.fsm.junk_commands(), 0u);
    }
    EXPECT_FALSE(t.closed());
    EXPECT_EQ(t.committed.size(), 5u);
}

TEST(server_fsm, ehlo_after_starttls_is_not_junk) {
    auto p = test_policy();
    p.max_junk_commands = 1;
    harness t(p);
    t.connect();
    t.line("EHLO c");
    EXPECT_TRUE(starts(t.line("STARTTLS"), "220"));
    t.resume(event::tls_established(tls_with(false, false, false)));
    EXPECT_TRUE(starts(t.line("EHLO c"), "250"));             // required by RFC 3207 §4.2
    EXPECT_EQ(t.fsm.junk_commands(), 0u);
    EXPECT_TRUE(starts(t.line("NOOP"), "250"));
    EXPECT_TRUE(starts(t.line("NOOP"), "421 4.7.0"));
}

TEST(server_fsm, a_large_body_is_handed_out_in_chunks_and_never_held_whole) {
    auto p = test_policy();
    p.max_message_size = 10 * 1024 * 1024;
    p.body_chunk_size = 64 * 1024;
    server_fsm fsm([&] {
        session_params s;
        s.policy = p;
        s.client_ip = "192.0.2.7";
        return s;
    }());
    fsm.resume(event::connected());
    fsm.resume(event::bytes("EHLO c\r\nMAIL FROM:<a@c.test> SIZE=9000000\r\n"));
    fsm.resume(event::bytes("RCPT TO:<b@example.test>\r\n"));
    auto a = fsm.resume(event::bytes("DATA\r\n"));
    ASSERT_EQ(a.out, "354 End data with <CR><LF>.<CR><LF>\r\n");
    std::string spooled;
    std::size_t largest_chunk = 0;
    const std::string line = std::string(998, 'x') + "\r\n";
    std::string sent = "Subject: big\r\n\r\n";
    a = fsm.resume(event::bytes("Subject: big\r\n\r\n"));
    for (int i = 0; i < 3000; ++i) {              // about 3 MB in 1000-octet lines
        a = fsm.resume(event::bytes(line));
        sent += line;
        largest_chunk = std::max(largest_chunk, a.body_chunk.size());
        spooled += a.body_chunk;
        ASSERT_EQ(a.what, action::kind::read);
    }
    a = fsm.resume(event::bytes(".\r\n"));
    spooled += a.body_chunk;
    ASSERT_EQ(a.what, action::kind::commit);
    EXPECT_LT(a.body.size(), 64u * 1024);         // only the last part is in the action
    EXPECT_LT(largest_chunk, 64u * 1024 + 2048);  // never much more than a chunk at once
    const std::string whole = spooled + a.body;
    ASSERT_TRUE(whole.starts_with("Received: "));
    EXPECT_EQ(whole.substr(whole.find("Subject: big")), sent);
}

TEST(server_fsm, a_rejected_body_hands_out_nothing_more) {
    auto p = test_policy();
    p.max_message_size = 10 * 1024 * 1024;
    p.body_chunk_size = 4096;
    harness t(p);
    t.connect();
    t.line("EHLO c");
    t.line("MAIL FROM:<a@c.test>");
    t.line("RCPT TO:<b@example.test>");
    t.line("DATA");
    t.last = t.fsm.resume(event::bytes(std::string(5000, 'x') + "\r\n"));   // an overlong line
    EXPECT_TRUE(t.last.body_chunk.empty());
    t.last = t.fsm.resume(event::bytes("more\r\n.\r\n"));
    EXPECT_TRUE(t.last.body_chunk.empty());
    EXPECT_TRUE(t.last.out.starts_with("550 5.6.0"));
    EXPECT_FALSE(t.fsm.in_data());
}

TEST(server_fsm, recipient_limit) {
    harness t;
    t.connect();
    t.line("EHLO c");
    t.line("MAIL FROM:<a@c.test>");
    for (int i = 0; i < 3; ++i) EXPECT_EQ(t.line("RCPT TO:<r" + std::to_string(i) + "@example.test>"), "250 2.1.5 Recipient OK\r\n");
    EXPECT_EQ(t.line("RCPT TO:<r9@example.test>"), "452 4.5.3 Too many recipients\r\n");
}

TEST(server_fsm, size_limits) {
    harness t;
    t.connect();
    t.line("EHLO c");
    EXPECT_EQ(t.line("MAIL FROM:<a@c.test> SIZE=10001"), "552 5.3.4 Message size exceeds fixed maximum message size\r\n");
    EXPECT_EQ(t.line("MAIL FROM:<a@c.test> SIZE=100"), "250 2.1.0 Sender OK\r\n");
    t.line("RCPT TO:<b@example.test>");
    t.line("DATA");
    std::string big;
    for (int i = 0; i < 200; ++i) big += std::string(70, 'x') + "\r\n";
    EXPECT_EQ(t.send(big + ".\r\n"), "552 5.3.4 Message size exceeds fixed maximum message size\r\n");
    EXPECT_TRUE(t.committed.empty());
    EXPECT_FALSE(t.fsm.in_transaction());
}

// The second envelope hidden behind a smuggled end of data never becomes a message.
TEST(server_fsm, smuggled_second_envelope_is_not_accepted) {
    for (const char* fake : {"\n.\n", "\n.\r\n", "\r.\r", "\r\n.\n", "\r\n.\r"}) {
        SCOPED_TRACE(::testing::PrintToString(std::string(fake)));
        harness t;
        t.connect();
        t.line("EHLO c");
        t.line("MAIL FROM:<a@c.test>");
        t.line("RCPT TO:<b@example.test>");
        t.line("DATA");
        auto out = t.send(std::string("Subject: one\r\n\r\nbody") + fake +
                          "MAIL FROM:<admin@example.test>\r\nRCPT TO:<victim@example.test>\r\nDATA\r\n"
                          "Subject: smuggled\r\n\r\nx\r\n.\r\n");
        EXPECT_EQ(out, "550 5.6.0 Message content rejected: bare CR or LF, NUL or overlong line\r\n");
        EXPECT_TRUE(t.committed.empty());
        EXPECT_FALSE(t.fsm.in_transaction());
        EXPECT_EQ(t.line("QUIT"), "221 2.0.0 mx.example.test Bye\r\n");
    }
}

TEST(server_fsm, hop_count) {
    auto p = test_policy();
    p.max_hop_count = 2;
    harness t(p);
    t.connect();
    t.line("EHLO c");
    t.line("MAIL FROM:<a@c.test>");
    t.line("RCPT TO:<b@example.test>");
    t.line("DATA");
    EXPECT_EQ(t.send("Received: a\r\nReceived: b\r\nReceived: c\r\n\r\nx\r\n.\r\n"),
              "554 5.4.6 Too many hops, mail loop detected\r\n");
    EXPECT_TRUE(t.committed.empty());
}

TEST(server_fsm, store_failure_and_low_space) {
    harness t;
    t.commit_succeeds = false;
    t.connect();
    t.line("EHLO c");
    t.line("MAIL FROM:<a@c.test>");
    t.line("RCPT TO:<b@example.test>");
    t.line("DATA");
    EXPECT_EQ(t.send("x\r\n.\r\n"), "452 4.3.1 Insufficient system storage\r\n");
    EXPECT_TRUE(t.logged("No space left on device"));
    EXPECT_EQ(t.fsm.messages_accepted(), 0u);
    t.storage_low = true;
    EXPECT_EQ(t.line("MAIL FROM:<a@c.test>"), "452 4.3.1 Insufficient system storage\r\n");
    EXPECT_FALSE(t.fsm.in_transaction());
}

TEST(server_fsm, protocol_error_limit) {
    auto p = test_policy();
    p.max_protocol_errors = 5;
    harness t(p);
    t.connect();
    for (int i = 0; i < 4; ++i) EXPECT_EQ(t.line("BOGUS"), "500 5.5.2 Command unrecognized\r\n");
    EXPECT_EQ(t.line("BOGUS"), "500 5.5.2 Command unrecognized\r\n421 4.7.0 mx.example.test Too many errors, closing connection\r\n");
    EXPECT_TRUE(t.closed());
}

TEST(server_fsm, overlong_and_nul_command_lines) {
    harness t;
    t.connect();
    EXPECT_EQ(t.send("NOOP " + std::string(3000, 'x') + "\r\n"), "500 5.5.2 Line too long\r\n");
    EXPECT_EQ(t.send(std::string("NO\0OP\r\n", 7)), "500 5.5.2 Syntax error, NUL in command line\r\n");
    EXPECT_EQ(t.line("NOOP"), "250 2.0.0 OK\r\n");
}

TEST(server_fsm, sequence_errors) {
    harness t;
    t.connect();
    EXPECT_EQ(t.line("MAIL FROM:<a@c.test>"), "503 5.5.1 Send EHLO or HELO first\r\n");
    t.line("HELO c");
    EXPECT_EQ(t.line("RCPT TO:<b@example.test>"), "503 5.5.1 Need MAIL command first\r\n");
    EXPECT_EQ(t.line("DATA"), "503 5.5.1 Need MAIL command first\r\n");
    EXPECT_EQ(t.line("MAIL FROM:<a@c.test> SIZE=10"), "555 5.5.4 Unsupported parameter\r\n");   // HELO: no extensions
    EXPECT_EQ(t.line("MAIL FROM:<a@c.test>"), "250 2.1.0 Sender OK\r\n");
}

TEST(server_fsm, more_sequence_errors_and_simple_commands) {
    harness t;
    t.connect();
    t.line("EHLO c");
    t.line("MAIL FROM:<a@c.test>");
    EXPECT_EQ(t.line("MAIL FROM:<a@c.test>"), "503 5.5.1 Nested MAIL command\r\n");
    EXPECT_EQ(t.line("DATA"), "554 5.5.1 No valid recipients\r\n");
    EXPECT_EQ(t.line("STARTTLS"), "503 5.5.1 Mail transaction in progress\r\n");
    EXPECT_EQ(t.line("RSET"), "250 2.0.0 Reset OK\r\n");
    EXPECT_FALSE(t.fsm.in_transaction());
    EXPECT_EQ(t.line("VRFY bob"), "252 2.5.0 Cannot VRFY user, but will accept message and attempt delivery\r\n");
    EXPECT_EQ(t.line("VRFY"), "501 5.5.4 Syntax error, argument required\r\n");
    EXPECT_TRUE(starts(t.line("HELP"), "214 2.0.0 "));
    EXPECT_EQ(t.line("EXPN list"), "502 5.5.1 Command not implemented\r\n");
    EXPECT_EQ(t.line("EHLO"), "501 5.5.4 Syntax error, a domain or address literal is required\r\n");
    EXPECT_EQ(t.line("MAIL FROM:<a@c.test> FOO=bar"), "555 5.5.4 Unsupported parameter\r\n");
    EXPECT_EQ(t.line("MAIL FROM:<jö@c.test>"), "553 5.6.7 Non-ASCII address requires SMTPUTF8\r\n");
    EXPECT_EQ(t.line("MAIL FROM:<a@@c.test>"), "501 5.1.7 Bad sender address syntax\r\n");
}

TEST(server_fsm, auth_is_logged_as_secret) {
    harness t;
    t.connect();
    EXPECT_EQ(t.line("AUTH PLAIN AGFsaWNlAHNlY3JldA=="), "502 5.5.1 Command not implemented\r\n");
    EXPECT_TRUE(t.logged("AUTH PLAIN <secret>"));
    EXPECT_FALSE(t.logged("AGFsaWNl"));
}

TEST(server_fsm, http_request_closes_the_connection) {
    harness t;
    t.connect();
    EXPECT_EQ(t.line("GET / HTTP/1.1"), "221 2.7.0 mx.example.test This is an SMTP server, closing connection\r\n");
    EXPECT_TRUE(t.closed());
}

TEST(server_fsm, timeout) {
    harness t;
    t.connect();
    EXPECT_EQ(t.resume(event::timed_out()), "421 4.4.2 mx.example.test Timeout exceeded, closing connection\r\n");
    EXPECT_TRUE(t.closed());
}

TEST(server_fsm, shutdown_when_idle_is_immediate) {
    harness t;
    t.connect();
    EXPECT_EQ(t.resume(event::stop(false)), "421 4.3.2 mx.example.test Service shutting down, closing connection\r\n");
    EXPECT_TRUE(t.closed());
}

TEST(server_fsm, shutdown_lets_the_transaction_finish) {
    harness t;
    t.connect();
    t.line("EHLO c");
    t.line("MAIL FROM:<a@c.test>");
    EXPECT_EQ(t.resume(event::stop(false)), "");
    EXPECT_FALSE(t.closed());
    t.line("RCPT TO:<b@example.test>");
    t.line("DATA");
    EXPECT_EQ(t.send("x\r\n.\r\nMAIL FROM:<again@c.test>\r\n"),
              "250 2.0.0 OK queued as Q1\r\n421 4.3.2 mx.example.test Service shutting down, closing connection\r\n");
    EXPECT_TRUE(t.closed());
    EXPECT_EQ(t.committed.size(), 1u);
}

TEST(server_fsm, shutdown_grace_over) {
    harness t;
    t.connect();
    t.line("EHLO c");
    t.line("MAIL FROM:<a@c.test>");
    t.resume(event::stop(false));
    EXPECT_EQ(t.resume(event::stop(true)), "421 4.3.2 mx.example.test Service shutting down, closing connection\r\n");
    EXPECT_TRUE(t.closed());
}

TEST(server_fsm, no_connector_allows_only_quit) {
    harness t(test_policy(), admission::no_connector);
    EXPECT_EQ(t.connect(), "554 5.7.1 mx.example.test No SMTP service for this client\r\n");
    EXPECT_EQ(t.line("EHLO c"), "503 5.5.1 No SMTP service here, only QUIT\r\n");
    EXPECT_EQ(t.line("QUIT"), "221 2.0.0 mx.example.test Bye\r\n");
}

TEST(server_fsm, too_many_connections) {
    harness t(test_policy(), admission::too_many_connections);
    EXPECT_EQ(t.connect(), "421 4.7.0 mx.example.test Too many connections, try again later\r\n");
    EXPECT_TRUE(t.closed());
}

TEST(server_fsm, implicit_tls_and_smtputf8_received_header) {
    auto p = test_policy();
    p.tls = server_policy::tls_offer::implicit;
    harness t(p);
    t.connect(tls_with(false, false, false));
    EXPECT_TRUE(t.logged("implicit TLS"));
    EXPECT_EQ(t.line("EHLO c").find("STARTTLS"), std::string::npos);
    t.line("MAIL FROM:<jö@bücher.test> SMTPUTF8");
    EXPECT_EQ(t.line("RCPT TO:<δοκιμή@example.test>"), "250 2.1.5 Recipient OK\r\n");
    t.line("DATA");
    t.send("x\r\n.\r\n");
    ASSERT_EQ(t.committed.size(), 1u);
    EXPECT_TRUE(t.committed[0].first.smtputf8);
    EXPECT_NE(t.committed[0].second.find("with UTF8SMTPS id"), std::string::npos);
    EXPECT_NE(t.committed[0].second.find("verify=NO)"), std::string::npos);
}

TEST(server_fsm, received_header_sanitises_client_text) {
    harness t;
    t.connect();
    t.line("EHLO evil(host);\"x\"[y]\\z");
    t.line("MAIL FROM:<a@c.test>");
    t.line("RCPT TO:<b@example.test>");
    t.line("RCPT TO:<c@example.test>");
    t.line("DATA");
    t.send("x\r\n.\r\n");
    ASSERT_EQ(t.committed.size(), 1u);
    const auto& body = t.committed[0].second;
    EXPECT_EQ(body.substr(0, body.find("\r\n")), "Received: from evil?host???x??y??z ([192.0.2.7])");
    EXPECT_EQ(body.find(" for <"), std::string::npos);    // several recipients: none named
}

TEST(server_fsm, log_records_lines_in_order) {
    harness t;
    t.connect();
    t.line("NOOP");
    ASSERT_GE(t.log.size(), 3u);
    EXPECT_EQ(t.log[0], (log_entry{log_entry::kind::sent, "220 mx.example.test ESMTP Postern"}));
    EXPECT_EQ(t.log[1], (log_entry{log_entry::kind::received, "NOOP"}));
    EXPECT_EQ(t.log[2], (log_entry{log_entry::kind::sent, "250 2.0.0 OK"}));
}

TEST(server_fsm, mutual_tls_alone_still_refuses_plaintext_mail) {
    auto p = test_policy();
    p.mutual_tls = true;                         // require_tls forgotten: never plaintext anyway
    harness t(p);
    t.connect();
    t.line("EHLO c");
    EXPECT_EQ(t.line("MAIL FROM:<a@c.test>"), "530 5.7.0 Must issue a STARTTLS command first\r\n");
}
