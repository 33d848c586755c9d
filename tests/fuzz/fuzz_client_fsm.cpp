// libFuzzer: the client side of SMTP (smtp/client_fsm.hpp) against an arbitrary server.
//
// Input: octet 0 chooses the settings (STARTTLS never / if offered / required, implicit
// TLS), octet 1 the transactions' shape (recipients, 8BITMIME, SMTPUTF8, DSN parameters,
// a body with dot lines or without a final CRLF), octet 2 whether each TLS handshake
// succeeds; the rest is what the server does, record by record: an octet n < 254 and then
// n octets it sends (so replies are split at arbitrary points), 254 a timeout, 255 a close.
// When the records run out the server closes.
//
// Invariants: the machine always ends, in a bounded number of steps; every line it writes
// is one of its own commands ending in CRLF (server bytes never reach the wire); a body
// ends in CRLF.CRLF with no lone dot line before (dot-stuffing holds); with
// STARTTLS required no MAIL is sent before TLS is up; after TLS starts the next command is
// EHLO; a finished transaction reports each of its recipients once, in order, and none as
// delivered unless the body went out; once closed it stays closed.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "smtp/client_fsm.hpp"

using namespace postern::smtp;

namespace {

bool starts_with(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }

/// Each line of a command write is ours and ends in CRLF. A lone ".CRLF" is one too: it
/// ends the data phase after a 354 that came although every recipient was refused.
void check_commands(std::string_view out) {
    if (out == ".\r\n") return;
    while (!out.empty()) {
        const auto end = out.find("\r\n");
        if (end == std::string_view::npos) __builtin_trap();
        const std::string_view line = out.substr(0, end);
        if (line.find_first_of("\r\n") != std::string_view::npos) __builtin_trap();
        if (!(starts_with(line, "EHLO ") || starts_with(line, "HELO ") || line == "STARTTLS" ||
              starts_with(line, "MAIL FROM:<") || starts_with(line, "RCPT TO:<") || line == "DATA" ||
              line == "RSET" || line == "QUIT"))
            __builtin_trap();
        out.remove_prefix(end + 2);
    }
}

/// A body write ends in CRLF.CRLF (or is the lone ".CRLF" that closes a data phase after
/// every recipient failed) and holds no earlier line that is a lone dot.
void check_body(const client_action& act) {
    std::string all;
    if (act.data.empty()) all = act.out;
    for (auto piece : act.data) all += piece;
    if (all == ".\r\n") return;
    if (all.size() < 5 || all.compare(all.size() - 5, 5, "\r\n.\r\n") != 0) __builtin_trap();
    const auto early = all.find("\r\n.\r\n");
    if (early != all.size() - 5 || all.rfind(".\r\n", 0) == 0) __builtin_trap();
}

transaction make_transaction(std::uint8_t shape, int n) {
    transaction tx;
    tx.mail_from = (shape & 0x80) ? "" : "alice@example.test";
    const std::size_t count = (shape & 0x03) + 1;
    for (std::size_t i = 0; i < count; ++i) tx.recipients.push_back("r" + std::to_string(n) + "-" + std::to_string(i) + "@partner.test");
    tx.body_8bit = shape & 0x04;
    tx.smtputf8 = shape & 0x08;
    if (shape & 0x10) {
        tx.ret = "HDRS";
        tx.envid = "ENV+2B1";
        tx.recipient_params = {{"SUCCESS,FAILURE", "rfc822;x@partner.test"}};
    }
    tx.body = (shape & 0x20) ? ".leading dot\r\nmiddle\r\n.\r\n..two\r\nno final crlf" : "Subject: t\r\n\r\nhello\r\n";
    return tx;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 3) return 0;
    client_settings settings;
    settings.helo_name = "client.example.test";
    settings.starttls = static_cast<client_settings::starttls_use>(data[0] % 3);
    settings.implicit_tls = (data[0] & 0x04) != 0;
    const std::uint8_t shape = data[1];
    std::uint8_t handshakes = data[2];
    std::size_t pos = 3;

    client_fsm fsm(settings);
    client_action act = fsm.resume(client_event::connected());
    transaction current;
    bool body_written = false, expect_ehlo = false, quit_asked = false;
    int transactions = 0;
    const std::size_t step_limit = 4 * size + 64;
    for (std::size_t step = 0;; ++step) {
        if (step > step_limit) __builtin_trap();   // every step consumes input or ends
        if (act.what == client_action::kind::write_data) check_body(act);
        else check_commands(act.out);
        if (expect_ehlo && !act.out.empty()) {
            if (!starts_with(act.out, "EHLO ")) __builtin_trap();
            expect_ehlo = false;
        }
        if (act.out.find("MAIL FROM:<") != std::string::npos && settings.starttls == client_settings::starttls_use::required &&
            !fsm.tls_active())
            __builtin_trap();

        client_event ev = client_event::closed();
        switch (act.what) {
        case client_action::kind::close: {
            const auto again = fsm.resume(client_event::bytes("250 ok\r\n"));
            if (again.what != client_action::kind::close || !again.out.empty()) __builtin_trap();
            return 0;
        }
        case client_action::kind::start_tls:
            if (!act.out.empty()) __builtin_trap();
            if (handshakes & 1) {
                ev = client_event::tls_established();
                expect_ehlo = true;
            } else {
                ev = client_event::tls_failed("handshake failed");
            }
            handshakes >>= 1;
            act = fsm.resume(ev);
            continue;
        case client_action::kind::transaction_done: {
            if (act.results.size() != current.recipients.size()) __builtin_trap();
            for (std::size_t i = 0; i < act.results.size(); ++i) {
                if (act.results[i].recipient != current.recipients[i]) __builtin_trap();
                if (act.results[i].what == verdict::delivered && !body_written) __builtin_trap();
            }
            [[fallthrough]];
        }
        case client_action::kind::idle:
            if (transactions < 3 && !quit_asked) {
                current = make_transaction(static_cast<std::uint8_t>(shape + 0x41 * transactions), transactions);
                ++transactions;
                body_written = false;
                act = fsm.resume(client_event::send(current));
            } else {
                quit_asked = true;
                act = fsm.resume(client_event::quit());
            }
            continue;
        case client_action::kind::write_data:
            body_written = true;
            [[fallthrough]];
        case client_action::kind::read:
            if (fsm.input_pending()) {
                ev = client_event::bytes({});
            } else if (pos < size) {
                const std::uint8_t record = data[pos++];
                if (record == 254) {
                    ev = client_event::timed_out();
                } else if (record == 255) {
                    ev = client_event::closed("reset by peer");
                } else {
                    const std::size_t n = std::min<std::size_t>(record, size - pos);
                    ev = client_event::bytes(std::string_view(reinterpret_cast<const char*>(data) + pos, n));
                    pos += n;
                }
            }
            act = fsm.resume(ev);
            continue;
        }
    }
}
