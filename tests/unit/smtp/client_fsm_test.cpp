// Unit tests for smtp/client_fsm: scripted server replies, no sockets.
#include "smtp/client_fsm.hpp"
#include "smtp/dot_writer.hpp"

#include <gtest/gtest.h>

namespace postern::smtp {
namespace {

using kind = client_action::kind;

transaction simple_tx(std::vector<std::string> rcpts = {"bob@partner.test"}) {
    transaction tx;
    tx.mail_from = "alice@example.test";
    tx.recipients = std::move(rcpts);
    tx.body = "Subject: hi\r\n\r\nhello\r\n";
    return tx;
}

/// A transaction with every RFC 3461 parameter: RET and ENVID on MAIL, NOTIFY and ORCPT
/// on the first RCPT, nothing on the second (absent), NOTIFY=NEVER on the third.
transaction dsn_tx() {
    auto tx = simple_tx({"bob@partner.test", "carol@partner.test", "dave@partner.test"});
    tx.ret = "FULL";
    tx.envid = "QQ+2B314";
    tx.recipient_params = {{"SUCCESS,FAILURE", "rfc822;bob+2Btag@partner.test"}, {}, {"NEVER", ""}};
    return tx;
}

/// Reads like a transcript: what we expect the client to write, what the server answers.
struct harness {
    client_fsm fsm;
    client_action act;

    explicit harness(client_settings s = {}) : fsm(std::move(s)) { act = fsm.resume(client_event::connected()); }

    void server(std::string_view bytes) { act = fsm.resume(client_event::bytes(bytes)); }
    void expect_out(std::string_view out) { EXPECT_EQ(act.out, out); }
    /// What a write_data action puts on the wire: its pieces, or `out`.
    std::string data_written() const {
        if (act.data.empty()) return act.out;
        std::string all;
        for (auto p : act.data) all += p;
        return all;
    }

    /// Greeting and EHLO with the given capability lines; leaves the machine idle.
    void greet(std::string caps = "250-PIPELINING\r\n250-8BITMIME\r\n250 SIZE 1000\r\n") {
        EXPECT_EQ(act.what, kind::read);
        server("220 mx.partner.test ESMTP\r\n");
        expect_out("EHLO localhost\r\n");
        server("250-mx.partner.test\r\n" + caps);
    }
};

TEST(reply_parser, multi_line_reply_with_enhanced_codes) {
    reply_parser p;
    p.feed("250-2.1.0 first\r\n250-2.1.0 second\r\n250 2.1.0 last\r\n");
    smtp::reply r;
    ASSERT_EQ(p.next(r), reply_parser::status::complete);
    EXPECT_EQ(r.code, 250);
    EXPECT_EQ(r.status, (smtp::enhanced_code{2, 1, 0}));
    EXPECT_EQ(r.text, "first\nsecond\nlast");
    EXPECT_EQ(p.next(r), reply_parser::status::need_more);
}

TEST(reply_parser, reply_split_across_reads) {
    reply_parser p;
    smtp::reply r;
    p.feed("250-a\r");
    EXPECT_EQ(p.next(r), reply_parser::status::need_more);
    p.feed("\n25");
    EXPECT_EQ(p.next(r), reply_parser::status::need_more);
    EXPECT_FALSE(p.complete_reply_buffered());
    p.feed("0 b\r\n");
    EXPECT_TRUE(p.complete_reply_buffered());
    ASSERT_EQ(p.next(r), reply_parser::status::complete);
    EXPECT_EQ(r.text, "a\nb");
}

TEST(reply_parser, refuses_mixed_codes_garbage_and_endless_lines) {
    smtp::reply r;
    reply_parser mixed;
    mixed.feed("250-a\r\n251 b\r\n");
    EXPECT_EQ(mixed.next(r), reply_parser::status::malformed);
    reply_parser garbage;
    garbage.feed("HTTP/1.1 400 Bad Request\r\n");
    EXPECT_EQ(garbage.next(r), reply_parser::status::malformed);
    reply_parser endless;
    endless.feed(std::string(reply_parser::max_line + 10, 'x'));
    EXPECT_EQ(endless.next(r), reply_parser::status::malformed);
    reply_parser bare_code;
    bare_code.feed("354\r\n");
    ASSERT_EQ(bare_code.next(r), reply_parser::status::complete);
    EXPECT_EQ(r.code, 354);
}

TEST(ehlo, capabilities_are_read) {
    auto r = parse_reply_lines({"250-mx", "250-STARTTLS", "250-pipelining", "250-SIZE 5000", "250-8BITMIME",
                                "250 SMTPUTF8"});
    ASSERT_TRUE(r);
    auto caps = parse_ehlo(*r);
    EXPECT_TRUE(caps.esmtp && caps.starttls && caps.pipelining && caps.eightbitmime && caps.smtputf8 && caps.size);
    EXPECT_EQ(caps.size_limit, 5000u);
}

TEST(dot_stuff, the_pieces_join_to_the_same_wire_form) {
    const std::vector<std::string> bodies = {"", ".", "a\r\n", "no final crlf", ".a\r\nb\r\n..c\r\n",
                                             "a\r\n.\r\n.\r\n..\r\n", "x\r\n.", "Subject: s\r\n\r\nbody\r\n"};
    for (const auto& body : bodies) {
        auto pieces = dot_stuffed_pieces(body, 100);
        ASSERT_TRUE(pieces) << body;
        std::string joined;
        for (auto p : *pieces) joined += p;
        EXPECT_EQ(joined, dot_stuff(body)) << body;
    }
    // A body without dot lines is two pieces: itself and the end marker.
    const std::string plain = "Subject: s\r\n\r\nbody\r\n";
    auto pieces = dot_stuffed_pieces(plain, 8);
    ASSERT_TRUE(pieces);
    ASSERT_EQ(pieces->size(), 2u);
    EXPECT_EQ((*pieces)[0].data(), plain.data());   // a view, not a copy
    // Too many dot lines for the limit: the caller stuffs into one buffer instead.
    EXPECT_FALSE(dot_stuffed_pieces("a\r\n.\r\n.\r\n.\r\n.\r\n", 4));
}

TEST(dot_stuff, a_dot_line_is_stuffed_wherever_it_falls_in_the_scan) {
    // Every position of "\n." across the 16-octet steps of the search, and its edges.
    for (std::size_t size = 1; size <= 70; ++size) {
        for (std::size_t at = 0; at + 1 < size; ++at) {
            std::string body(size, 'x');
            body[at] = '\n';
            body[at + 1] = '.';
            std::string expected = body.substr(0, at + 1) + "." + body.substr(at + 1);
            expected += (body.back() == '\n' ? "" : "\r\n");
            expected += ".\r\n";
            ASSERT_EQ(dot_stuff(body), expected) << "size " << size << " at " << at;
            auto pieces = dot_stuffed_pieces(body, 10);
            ASSERT_TRUE(pieces);
            std::string joined;
            for (auto p : *pieces) joined += p;
            ASSERT_EQ(joined, expected) << "size " << size << " at " << at;
        }
    }
}

TEST(dot_stuff, leading_dots_are_doubled_and_the_end_is_marked) {
    EXPECT_EQ(dot_stuff(".a\r\nb\r\n..c\r\n"), "..a\r\nb\r\n...c\r\n.\r\n");
    EXPECT_EQ(dot_stuff("no final crlf"), "no final crlf\r\n.\r\n");
    EXPECT_EQ(dot_stuff("a\r\n.\r\nb\r\n"), "a\r\n..\r\nb\r\n.\r\n");   // cannot end DATA early
    EXPECT_EQ(dot_stuff(""), ".\r\n");
    EXPECT_EQ(dot_stuff("."), "..\r\n.\r\n");
    EXPECT_EQ(dot_stuff("a\r\n.\r\n.\r\n..\r\n"), "a\r\n..\r\n..\r\n...\r\n.\r\n");   // dot lines in a row
    EXPECT_EQ(dot_stuff("x\r\n."), "x\r\n..\r\n.\r\n");   // a last line of one dot, no CRLF
}

TEST(client_fsm, plain_transaction_without_pipelining) {
    harness t;
    t.greet("250 8BITMIME\r\n");
    ASSERT_EQ(t.act.what, kind::idle);
    t.act = t.fsm.resume(client_event::send(simple_tx({"bob@partner.test", "carol@partner.test"})));
    t.expect_out("MAIL FROM:<alice@example.test>\r\n");
    t.server("250 2.1.0 OK\r\n");
    t.expect_out("RCPT TO:<bob@partner.test>\r\n");
    t.server("550 5.1.1 no such user\r\n");
    t.expect_out("RCPT TO:<carol@partner.test>\r\n");
    t.server("250 2.1.5 OK\r\n");
    t.expect_out("DATA\r\n");
    t.server("354 go ahead\r\n");
    ASSERT_EQ(t.act.what, kind::write_data);
    EXPECT_EQ(t.data_written(), "Subject: hi\r\n\r\nhello\r\n.\r\n");
    EXPECT_EQ(t.act.stage, wait_stage::data_end);
    t.server("250 2.0.0 queued as X\r\n");
    ASSERT_EQ(t.act.what, kind::transaction_done);
    ASSERT_EQ(t.act.results.size(), 2u);
    EXPECT_EQ(t.act.results[0].what, verdict::permanent);
    EXPECT_EQ(t.act.results[0].remote->code, 550);
    EXPECT_EQ(t.act.results[1].what, verdict::delivered);
    EXPECT_EQ(t.act.results[1].remote->code, 250);
    t.act = t.fsm.resume(client_event::quit());
    t.expect_out("QUIT\r\n");
    t.server("221 bye\r\n");
    EXPECT_EQ(t.act.what, kind::close);
    EXPECT_FALSE(t.act.failure);
}

TEST(client_fsm, pipelined_group_and_size_parameter) {
    harness t;
    t.greet();
    t.act = t.fsm.resume(client_event::send(simple_tx({"a@partner.test", "b@partner.test"})));
    const std::string size = std::to_string(simple_tx().body.size());
    t.expect_out("MAIL FROM:<alice@example.test> SIZE=" + size +
                 "\r\nRCPT TO:<a@partner.test>\r\nRCPT TO:<b@partner.test>\r\nDATA\r\n");
    // All four replies in one segment, as a pipelining server sends them.
    t.server("250 ok\r\n452 4.5.3 too many recipients\r\n250 ok\r\n354 go\r\n");
    ASSERT_EQ(t.act.what, kind::write_data);
    t.server("250 ok\r\n");
    ASSERT_EQ(t.act.what, kind::transaction_done);
    EXPECT_TRUE(t.act.results[0].too_many_recipients());
    EXPECT_EQ(t.act.results[1].what, verdict::delivered);
}

TEST(client_fsm, pipelined_group_with_every_recipient_refused_sends_no_body) {
    harness t;
    t.greet();
    t.act = t.fsm.resume(client_event::send(simple_tx()));
    t.server("250 ok\r\n550 no\r\n554 5.5.1 no valid recipients\r\n");
    ASSERT_EQ(t.act.what, kind::transaction_done);
    EXPECT_EQ(t.act.results[0].what, verdict::permanent);
    EXPECT_EQ(t.act.results[0].remote->code, 550);
}

TEST(client_fsm, pipelined_354_without_recipients_is_closed_with_an_empty_message) {
    harness t;
    t.greet();
    t.act = t.fsm.resume(client_event::send(simple_tx()));
    t.server("250 ok\r\n550 no\r\n354 go\r\n");
    t.expect_out(".\r\n");
    t.server("554 no valid recipients\r\n");
    ASSERT_EQ(t.act.what, kind::transaction_done);
    EXPECT_EQ(t.act.results[0].remote->code, 550);
}

TEST(client_fsm, second_transaction_on_the_connection_starts_with_rset) {
    harness t;
    t.greet("250 8BITMIME\r\n");
    t.act = t.fsm.resume(client_event::send(simple_tx()));
    t.server("451 4.3.0 try later\r\n");
    ASSERT_EQ(t.act.what, kind::transaction_done);
    EXPECT_EQ(t.act.results[0].what, verdict::transient);
    EXPECT_EQ(t.act.results[0].remote->code, 451);
    t.act = t.fsm.resume(client_event::send(simple_tx()));
    t.expect_out("RSET\r\n");
    t.server("250 reset\r\n");
    t.expect_out("MAIL FROM:<alice@example.test>\r\n");
}

TEST(ehlo, dsn_keyword_is_read) {
    auto with = parse_reply_lines({"250-mx", "250-dsn", "250 PIPELINING"});
    ASSERT_TRUE(with);
    EXPECT_TRUE(parse_ehlo(*with).dsn);
    auto without = parse_reply_lines({"250-mx", "250 PIPELINING"});
    ASSERT_TRUE(without);
    EXPECT_FALSE(parse_ehlo(*without).dsn);
}

// RFC 3461 §4: a next hop that advertises DSN gets RET and ENVID on MAIL, NOTIFY and ORCPT
// on each RCPT that has them, byte for byte as queued.
TEST(client_fsm, dsn_parameters_go_to_a_next_hop_that_advertises_dsn) {
    harness t;
    t.greet("250-8BITMIME\r\n250 DSN\r\n");
    ASSERT_EQ(t.act.what, kind::idle);
    t.act = t.fsm.resume(client_event::send(dsn_tx()));
    t.expect_out("MAIL FROM:<alice@example.test> RET=FULL ENVID=QQ+2B314\r\n");
    t.server("250 2.1.0 OK\r\n");
    t.expect_out("RCPT TO:<bob@partner.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;bob+2Btag@partner.test\r\n");
    t.server("250 2.1.5 OK\r\n");
    t.expect_out("RCPT TO:<carol@partner.test>\r\n");
    t.server("250 2.1.5 OK\r\n");
    t.expect_out("RCPT TO:<dave@partner.test> NOTIFY=NEVER\r\n");
    t.server("250 2.1.5 OK\r\n");
    t.expect_out("DATA\r\n");
    t.server("354 go ahead\r\n");
    ASSERT_EQ(t.act.what, kind::write_data);
    t.server("250 2.0.0 queued\r\n");
    ASSERT_EQ(t.act.what, kind::transaction_done);
    ASSERT_EQ(t.act.results.size(), 3u);
    for (const auto& r : t.act.results) {
        EXPECT_EQ(r.what, verdict::delivered);
        EXPECT_TRUE(r.next_hop_dsn) << "the next hop took over the notices";
    }
}

TEST(client_fsm, dsn_parameters_in_a_pipelined_group_after_size_and_body) {
    harness t;
    t.greet("250-PIPELINING\r\n250-8BITMIME\r\n250-SIZE 100000\r\n250 DSN\r\n");
    auto tx = dsn_tx();
    tx.body_8bit = true;
    tx.recipients.resize(1);
    const auto size = std::to_string(tx.body.size());
    t.act = t.fsm.resume(client_event::send(tx));
    t.expect_out("MAIL FROM:<alice@example.test> SIZE=" + size + " BODY=8BITMIME RET=FULL ENVID=QQ+2B314\r\n"
                 "RCPT TO:<bob@partner.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;bob+2Btag@partner.test\r\n"
                 "DATA\r\n");
}

// RFC 3461 §4.1-4.2 / §5.2.2: relaying to a next hop without DSN, the parameters are left
// off (it would refuse them with 555), and the results say that nobody downstream will
// report: a NOTIFY=SUCCESS recipient is owed a "relayed" notice by us.
TEST(client_fsm, dsn_parameters_are_left_off_without_the_dsn_keyword) {
    harness t;
    t.greet("250-PIPELINING\r\n250 8BITMIME\r\n");
    ASSERT_FALSE(t.fsm.offered().dsn);
    t.act = t.fsm.resume(client_event::send(dsn_tx()));
    t.expect_out("MAIL FROM:<alice@example.test>\r\nRCPT TO:<bob@partner.test>\r\nRCPT TO:<carol@partner.test>\r\n"
                 "RCPT TO:<dave@partner.test>\r\nDATA\r\n");
    t.server("250 ok\r\n250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n");
    ASSERT_EQ(t.act.what, kind::write_data);
    t.server("250 ok\r\n");
    ASSERT_EQ(t.act.what, kind::transaction_done);
    ASSERT_EQ(t.act.results.size(), 3u);
    for (const auto& r : t.act.results) EXPECT_FALSE(r.next_hop_dsn);
}

TEST(client_fsm, dsn_parameters_are_left_off_after_a_helo_fallback) {
    harness t;
    t.server("220 old.partner.test\r\n");
    t.server("502 command not implemented\r\n");
    t.server("250 old.partner.test\r\n");
    ASSERT_EQ(t.act.what, kind::idle);
    t.act = t.fsm.resume(client_event::send(dsn_tx()));
    t.expect_out("MAIL FROM:<alice@example.test>\r\n");
    t.server("250 ok\r\n");
    t.expect_out("RCPT TO:<bob@partner.test>\r\n");
}

// A transaction without RFC 3461 fields (postern send, older callers) reads as before,
// even to a DSN server; recipient_params shorter than recipients means "none".
TEST(client_fsm, no_dsn_fields_no_dsn_parameters) {
    harness t;
    t.greet("250 DSN\r\n");
    auto tx = simple_tx({"a@partner.test", "b@partner.test"});
    tx.recipient_params = {{"DELAY", ""}};
    t.act = t.fsm.resume(client_event::send(tx));
    t.expect_out("MAIL FROM:<alice@example.test>\r\n");
    t.server("250 ok\r\n");
    t.expect_out("RCPT TO:<a@partner.test> NOTIFY=DELAY\r\n");
    t.server("250 ok\r\n");
    t.expect_out("RCPT TO:<b@partner.test>\r\n");
}

TEST(client_fsm, helo_fallback_when_ehlo_is_unknown) {
    harness t;
    t.server("220 old.partner.test\r\n");
    t.server("502 command not implemented\r\n");
    t.expect_out("HELO localhost\r\n");
    t.server("250 old.partner.test\r\n");
    EXPECT_EQ(t.act.what, kind::idle);
    EXPECT_FALSE(t.fsm.offered().esmtp);
}

TEST(client_fsm, capability_checks_refuse_before_mail) {
    {
        harness t;
        t.greet("250 SIZE 10\r\n");
        auto tx = simple_tx();
        tx.body_8bit = true;
        t.act = t.fsm.resume(client_event::send(tx));
        ASSERT_EQ(t.act.what, kind::transaction_done);
        EXPECT_TRUE(t.act.out.empty());
        EXPECT_EQ(t.act.results[0].what, verdict::permanent);
        EXPECT_EQ(dsn_status(t.act.results[0]), (smtp::enhanced_code{5, 6, 3}));
    }
    {
        harness t;
        t.greet("250 8BITMIME\r\n");
        auto tx = simple_tx();
        tx.smtputf8 = true;
        t.act = t.fsm.resume(client_event::send(tx));
        ASSERT_EQ(t.act.what, kind::transaction_done);
        EXPECT_EQ(dsn_status(t.act.results[0]), (smtp::enhanced_code{5, 6, 7}));
    }
    {
        harness t;
        t.greet("250 SIZE 10\r\n");
        t.act = t.fsm.resume(client_event::send(simple_tx()));
        ASSERT_EQ(t.act.what, kind::transaction_done);
        EXPECT_EQ(dsn_status(t.act.results[0]), (smtp::enhanced_code{5, 3, 4}));
    }
    {
        harness t;
        t.greet("250-8BITMIME\r\n250 SMTPUTF8\r\n");
        auto tx = simple_tx();
        tx.smtputf8 = true;
        tx.body_8bit = true;
        t.act = t.fsm.resume(client_event::send(tx));
        t.expect_out("MAIL FROM:<alice@example.test> BODY=8BITMIME SMTPUTF8\r\n");
    }
}

TEST(client_fsm, starttls_forgets_capabilities_and_discards_injected_bytes) {
    client_settings s;
    s.starttls = client_settings::starttls_use::required;
    harness t(s);
    t.greet("250-STARTTLS\r\n250 PIPELINING\r\n");
    t.expect_out("STARTTLS\r\n");
    // A man in the middle appends a reply the client would otherwise take as the
    // answer to its first command after TLS.
    t.server("220 2.0.0 go ahead\r\n250-injected\r\n250 PIPELINING\r\n");
    ASSERT_EQ(t.act.what, kind::start_tls);
    EXPECT_GT(t.fsm.discarded_after_starttls(), 0u);
    EXPECT_FALSE(t.fsm.input_pending());
    t.act = t.fsm.resume(client_event::tls_established());
    t.expect_out("EHLO localhost\r\n");
    EXPECT_FALSE(t.fsm.offered().pipelining);       // forgotten until the new EHLO reply
    t.server("250-mx.partner.test\r\n250 8BITMIME\r\n");
    ASSERT_EQ(t.act.what, kind::idle);
    EXPECT_TRUE(t.fsm.tls_active());
    EXPECT_FALSE(t.fsm.offered().pipelining);
    EXPECT_FALSE(t.fsm.offered().starttls);
}

TEST(client_fsm, required_tls_fails_without_starttls_or_on_454_or_a_bad_handshake) {
    client_settings s;
    s.starttls = client_settings::starttls_use::required;
    {
        harness t(s);
        t.greet("250 8BITMIME\r\n");
        ASSERT_EQ(t.act.what, kind::close);
        ASSERT_TRUE(t.act.failure);
        EXPECT_TRUE(t.act.failure->tls_setup);
        EXPECT_EQ(t.act.failure->reason, "STARTTLS not offered");
        EXPECT_EQ(t.act.out, "QUIT\r\n");
    }
    {
        harness t(s);
        t.greet("250 STARTTLS\r\n");
        t.server("454 4.7.0 TLS not available\r\n");
        ASSERT_EQ(t.act.what, kind::close);
        EXPECT_TRUE(t.act.failure->tls_setup);
        EXPECT_EQ(t.act.failure->remote->code, 454);
    }
    {
        harness t(s);
        t.greet("250 STARTTLS\r\n");
        t.server("220 go\r\n");
        t.act = t.fsm.resume(client_event::tls_failed("certificate verify failed"));
        ASSERT_EQ(t.act.what, kind::close);
        EXPECT_TRUE(t.act.failure->tls_setup);
        EXPECT_EQ(t.act.failure->reason, "certificate verify failed");
    }
}

TEST(client_fsm, opportunistic_without_starttls_goes_on_in_plaintext) {
    harness t;   // if_offered
    t.greet("250 8BITMIME\r\n");
    EXPECT_EQ(t.act.what, kind::idle);
    EXPECT_FALSE(t.fsm.tls_active());
}

TEST(client_fsm, implicit_tls_does_not_ask_for_starttls) {
    client_settings s;
    s.implicit_tls = true;
    s.starttls = client_settings::starttls_use::required;
    harness t(s);
    t.greet("250 8BITMIME\r\n");
    EXPECT_EQ(t.act.what, kind::idle);
}

TEST(client_fsm, greeting_refusal_is_a_session_failure) {
    harness t;
    t.server("554 5.7.1 no service\r\n");
    ASSERT_EQ(t.act.what, kind::close);
    EXPECT_TRUE(t.act.failure->permanent);
    EXPECT_EQ(t.act.out, "QUIT\r\n");
}

TEST(client_fsm, lost_connection_after_the_dot_is_transient) {
    harness t;
    t.greet("250 8BITMIME\r\n");
    t.act = t.fsm.resume(client_event::send(simple_tx()));
    t.server("250 ok\r\n");
    t.server("250 ok\r\n");
    t.server("354 go\r\n");
    t.act = t.fsm.resume(client_event::timed_out());
    ASSERT_EQ(t.act.what, kind::close);
    ASSERT_EQ(t.act.results.size(), 1u);
    EXPECT_EQ(t.act.results[0].what, verdict::transient);
    EXPECT_NE(t.act.results[0].reason.find("timeout"), std::string::npos);
}

TEST(client_fsm, reply_421_mid_transaction_defers_everyone) {
    harness t;
    t.greet("250 8BITMIME\r\n");
    t.act = t.fsm.resume(client_event::send(simple_tx({"a@p.test", "b@p.test"})));
    t.server("250 ok\r\n");
    t.server("250 ok\r\n");
    t.server("421 4.3.2 shutting down\r\n");
    ASSERT_EQ(t.act.what, kind::close);
    ASSERT_EQ(t.act.results.size(), 2u);
    for (auto& r : t.act.results) EXPECT_EQ(r.what, verdict::transient);
}

TEST(client_fsm, transcript_records_commands_and_replies_but_not_the_body) {
    harness t;
    t.greet("250 8BITMIME\r\n");
    t.act = t.fsm.resume(client_event::send(simple_tx()));
    t.server("250 ok\r\n");
    t.server("250 ok\r\n");
    t.server("354 go\r\n");
    for (const auto& line : t.act.log) EXPECT_EQ(line.text.find("hello"), std::string::npos);
}

}  // namespace
}  // namespace postern::smtp

namespace postern::smtp {
namespace {

TEST(dot_stuffing, a_body_stuffed_block_by_block_equals_the_body_stuffed_whole) {
    const std::string body = ".starts with a dot\r\nplain\r\n.\r\n..two\r\nx.y\r\n.last";
    for (std::size_t block = 1; block <= body.size(); ++block) {
        std::string out;
        bool at_line_start = true;
        for (std::size_t at = 0; at < body.size(); at += block) {
            const auto piece = std::string_view(body).substr(at, block);
            append_dot_stuffed(out, piece, at_line_start);
            at_line_start = piece.back() == '\n';
        }
        out += body.back() == '\n' ? ".\r\n" : "\r\n.\r\n";
        EXPECT_EQ(out, dot_stuff(body)) << "block size " << block;
    }
}

}  // namespace
}  // namespace postern::smtp
