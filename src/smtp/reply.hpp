// smtp/reply.hpp: an SMTP reply as a value: basic code, enhanced status code, text.
//
// Standards: RFC 5321 §4.2 (reply codes, multi-line replies), RFC 2034 and RFC 3463
// (enhanced status codes), RFC 2920 (replies are batched when commands are pipelined).
// Session logic never formats reply strings by hand: it picks a reply from
// smtp/replies.hpp and wire() turns it into octets.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace postern::smtp {

/// RFC 3463 class.subject.detail, e.g. 5.7.0. All zero means "none" (RFC 2034 §3 leaves
/// the greeting and the EHLO reply without one).
struct enhanced_code {
    std::uint8_t klass = 0;
    std::uint16_t subject = 0;
    std::uint16_t detail = 0;

    bool empty() const { return klass == 0; }
    std::string to_string() const;            // "5.7.0", "" when empty
    friend bool operator==(const enhanced_code&, const enhanced_code&) = default;
};

struct reply {
    std::uint16_t code = 0;                   // RFC 5321 basic code
    enhanced_code status;                     // agrees with code's first digit (tested)
    std::string text;                         // one line per '\n'-separated part

    bool positive() const { return code / 100 == 2 || code / 100 == 3; }
    bool transient() const { return code / 100 == 4; }
    bool permanent() const { return code / 100 == 5; }

    /// The octets on the wire: "250-first\r\n250 last\r\n" for multi-line text, each line
    /// carrying the enhanced code when there is one (RFC 2034 §4).
    std::string wire() const;
    /// The same, one entry per line, without CRLF: what the protocol log records.
    std::vector<std::string> lines() const;

    friend bool operator==(const reply&, const reply&) = default;
};

}  // namespace postern::smtp
