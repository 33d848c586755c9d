// libFuzzer: the server side of SMTP (smtp/server_fsm.hpp) against an arbitrary client.
//
// Input: octet 0 chooses the policy (STARTTLS offered or not, require_tls, an
// authoritative domain whose recipients are checked at once or asked of a directory,
// storage low), octet 1 how the driver answers (commits fail, the directory is down,
// TLS handshakes fail); the rest is what the client does, record by record: an octet
// n < 253 and then n octets it sends (so commands and data are split at arbitrary points),
// 253 a polite stop, 254 a timeout, 255 a close. When the records run out the client
// closes.
//
// Invariants: the machine always ends, in a bounded number of steps; every write is whole
// CRLF-terminated reply lines with a three-digit code; it never asks the driver to commit
// without a recipient, nor to check a recipient of a domain that is not ours; a commit or
// a directory question is always answered before input is taken again; once closed it
// stays closed.
#include <cctype>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "smtp/server_fsm.hpp"

using namespace postern::smtp;

namespace {

void check_replies(std::string_view out) {
    while (!out.empty()) {
        const auto end = out.find("\r\n");
        if (end == std::string_view::npos || end < 3) __builtin_trap();
        for (int i = 0; i < 3; ++i)
            if (!std::isdigit(static_cast<unsigned char>(out[i]))) __builtin_trap();
        if (out.substr(0, end).find_first_of("\r\n") != std::string_view::npos) __builtin_trap();
        out.remove_prefix(end + 2);
    }
}

tls_summary lab_tls() {
    tls_summary t;
    t.protocol = "TLSv1.3";
    t.cipher = "TLS_AES_128_GCM_SHA256";
    t.cipher_bits = 128;
    return t;
}

/// Domains compare without regard to case.
bool ends_with(std::string_view s, std::string_view suffix) {
    if (s.size() < suffix.size()) return false;
    s = s.substr(s.size() - suffix.size());
    for (std::size_t i = 0; i < s.size(); ++i)
        if (std::tolower(static_cast<unsigned char>(s[i])) != suffix[i]) return false;
    return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 2) return 0;
    const std::uint8_t policy = data[0], driver = data[1];
    data += 2;
    size -= 2;

    server_policy p;
    p.hostname = "mx.example.test";
    p.connector_name = "fuzz";
    p.accepted_domains = {"example.test"};
    p.max_message_size = 4096;
    p.max_recipients = 5;
    p.max_protocol_errors = 10;
    p.tls = policy & 1 ? server_policy::tls_offer::starttls : server_policy::tls_offer::none;
    p.require_tls = (policy & 2) && (policy & 1);
    const bool checked = policy & 4, asked = policy & 8;
    if (checked)
        p.check_recipient = [asked](const std::string& address) {
            if (!ends_with(address, "@example.test")) __builtin_trap();   // only ours are checked
            if (asked) return server_policy::recipient_status::ask;
            return address.size() % 2 ? server_policy::recipient_status::known
                                      : server_policy::recipient_status::unknown;
        };
    session_params s;
    s.policy = p;
    s.session_id = "0000000000000001";
    s.client_ip = "192.0.2.1";
    s.tls_available = p.tls != server_policy::tls_offer::none;
    const bool storage_low = policy & 16;
    s.storage_low = [storage_low] { return storage_low; };
    s.clock = [] { return std::chrono::system_clock::time_point(std::chrono::seconds(1700000000)); };
    server_fsm fsm(std::move(s));

    bool closed = false;
    int steps = 0;
    auto drive = [&](const event& first) {
        action act = fsm.resume(first);
        for (;;) {
            if (++steps > 100000) __builtin_trap();   // the machine must settle
            if (closed && !act.out.empty()) __builtin_trap();
            check_replies(act.out);
            switch (act.what) {
            case action::kind::read: return;
            case action::kind::close: closed = true; return;
            case action::kind::start_tls:
                if (driver & 4) act = fsm.resume(event::tls_failure("fuzzed failure"));
                else act = fsm.resume(event::tls_established(lab_tls()));
                break;
            case action::kind::commit:
                if (act.envelope.recipients.empty()) __builtin_trap();
                act = fsm.resume(event::commit_result(!(driver & 1), "Q1", "fuzzed", driver & 8));
                break;
            case action::kind::check_recipient:
                if (!checked || !asked || !ends_with(act.recipient, "@example.test")) __builtin_trap();
                act = fsm.resume(event::recipient_result(driver & 2 ? server_policy::recipient_status::unavailable
                                 : act.recipient.size() % 2 ? server_policy::recipient_status::known
                                                            : server_policy::recipient_status::unknown,
                                                         "fuzzed"));
                break;
            }
        }
    };
    drive(event::connected());
    std::size_t at = 0;
    while (!closed && at < size) {
        const std::uint8_t n = data[at++];
        if (n == 253) drive(event::stop(false));
        else if (n == 254) drive(event::timed_out());
        else if (n == 255) drive(event::closed("fuzzed close"));
        else {
            const std::size_t len = std::min<std::size_t>(n, size - at);
            drive(event::bytes(std::string_view(reinterpret_cast<const char*>(data + at), len)));
            at += len;
        }
    }
    if (!closed) drive(event::closed());
    if (!closed) __builtin_trap();
    return 0;
}
