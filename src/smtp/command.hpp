// smtp/command.hpp: command lines from arbitrary byte chunks, and their verb/argument split.
//
// Standards: RFC 5321 §2.3.8 (lines end with CRLF), §4.1.1 (command syntax, verbs are
// case-insensitive), §4.5.3.1.4 (command line length; we allow up to max_line octets
// including the CRLF, enough for every extension parameter we support).
// Security: an overlong line is discarded up to its end and reported once (500 5.5.2),
// so its tail can never be read as a command; a NUL anywhere in a line rejects it.
// Memory stays bounded: at most max_line octets of one line are kept.
// A bare LF also ends a command line (as in Postfix): outside DATA it is harmless, and
// DATA has its own strict reader (smtp/dot_reader.hpp).
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace postern::smtp {

struct line {
    enum class status { ok, too_long, nul };
    status state = status::ok;
    std::string text;                       // without the line ending; empty unless ok
};

class line_reader {
public:
    static constexpr std::size_t max_line = 2048;   // octets including CRLF (DESIGN §5)

    void feed(std::string_view bytes);
    /// The next complete line, or nothing until more bytes arrive.
    std::optional<line> next();
    /// Hands back every buffered byte not yet returned as a line (DATA takes over the
    /// stream; STARTTLS discards it) and forgets it.
    std::string take_rest();
    std::size_t buffered() const { return buffer_.size() - start_; }

private:
    std::string buffer_;
    std::size_t start_ = 0;                 // first byte not yet returned
    std::size_t scanned_ = 0;               // bytes from start_ known to hold no LF
    bool discarding_ = false;               // inside an overlong line, until its LF
};

struct command {
    std::string verb;                       // upper-case ASCII
    std::string argument;                   // after the verb and its spaces, as sent
};

/// Splits a command line into verb and argument. Nothing when the verb is not 1-20
/// ASCII letters (it then cannot be a command: 500 5.5.2).
std::optional<command> parse_command(std::string_view text);

/// The line as the protocol log may record it: AUTH arguments become <secret>.
std::string redact_for_log(std::string_view text);

}  // namespace postern::smtp
