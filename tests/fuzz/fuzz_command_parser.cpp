// libFuzzer: command line assembly and the whole server state machine on arbitrary input.
// Invariants: no crash, no unbounded buffering, replies are well-formed, and a message is
// only committed through the commit action.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "smtp/command.hpp"
#include "smtp/server_fsm.hpp"

using namespace postern::smtp;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::string_view input(reinterpret_cast<const char*>(data), size);

    // 1. The line reader, fed in irregular chunks.
    line_reader lines;
    std::size_t pos = 0, step = 1;
    while (pos < input.size()) {
        auto piece = input.substr(pos, step);
        pos += piece.size();
        step = step * 3 % 17 + 1;
        lines.feed(piece);
        while (auto l = lines.next()) {
            if (l->text.size() > line_reader::max_line) __builtin_trap();
            if (l->state == line::status::ok) (void)parse_command(l->text), (void)redact_for_log(l->text);
        }
        if (lines.buffered() > line_reader::max_line + piece.size()) __builtin_trap();
    }

    // 2. The state machine: the input is the client's byte stream; TLS and commits succeed.
    session_params p;
    p.policy.hostname = "mx.fuzz.test";
    p.policy.accepted_domains = {"fuzz.test"};
    p.policy.max_message_size = 4096;
    p.policy.max_protocol_errors = 1000;
    p.policy.max_junk_commands = 50;
    p.policy.body_chunk_size = 512;         // bodies are handed out in chunks, as the server does
    p.clock = [] { return std::chrono::system_clock::time_point(); };
    server_fsm fsm(p);
    auto act = fsm.resume(event::connected());
    pos = 0;
    step = 7;
    std::size_t chunked = 0;                // body octets handed out for the current message
    while (act.what != action::kind::close && pos < input.size()) {
        // A chunk never outgrows the chunk size by more than one read, and a message's
        // chunks and its last part together stay within the size limit plus our header.
        if (act.body_chunk.size() > 512 + 23 + 2048) __builtin_trap();
        chunked += act.body_chunk.size();
        if (act.what == action::kind::commit && chunked + act.body.size() > 4096 + 2048) __builtin_trap();
        if (act.what == action::kind::commit || !fsm.in_data()) chunked = 0;
        switch (act.what) {
        case action::kind::read: {
            auto piece = input.substr(pos, step);
            pos += piece.size();
            step = step * 5 % 23 + 1;
            act = fsm.resume(event::bytes(piece));
            break;
        }
        case action::kind::start_tls:
            act = fsm.resume(event::tls_established(tls_summary{}));
            break;
        case action::kind::commit:
            if (act.envelope.recipients.empty()) __builtin_trap();
            act = fsm.resume(event::commit_result(true, "Q", {}));
            break;
        case action::kind::check_recipient:   // no check_recipient in this policy: never asked
            __builtin_trap();
        case action::kind::close:
            break;
        }
        if (!act.out.empty() && (act.out.size() < 5 || act.out.substr(act.out.size() - 2) != "\r\n")) __builtin_trap();
    }
    return 0;
}
