// smtp/reply_parser.hpp: reading a server's replies off the wire (the client side).
//
// Standards: RFC 5321 §4.2 (reply lines, multi-line replies), RFC 2034 (enhanced status
// codes on every line). Bounded: a line over max_line or a reply over max_lines is
// malformed, so a hostile server cannot make the client buffer without end.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "smtp/reply.hpp"

namespace postern::smtp {

/// Reads SMTP replies (RFC 5321 §4.2.1): "250-first", "250 last"; the enhanced status
/// code (RFC 2034) is taken off every line that carries one.
class reply_parser {
public:
    enum class status { need_more, complete, malformed };

    /// Appends bytes. Call next() until it says need_more.
    void feed(std::string_view bytes) { buffer_.append(bytes); }
    /// The next complete reply, if the buffer holds one.
    status next(smtp::reply& out, std::string* error = nullptr);
    /// Bytes received but not yet part of a reply (discarded on STARTTLS).
    std::size_t buffered() const { return buffer_.size(); }
    void clear() { buffer_.clear(); lines_.clear(); }
    /// True when the buffer already holds a whole reply (its last line included).
    bool complete_reply_buffered() const;

    /// Longest reply line accepted (RFC 5321 §4.5.3.1.5 says 512; real servers send more).
    static constexpr std::size_t max_line = 4096;
    /// Most lines in one reply (an EHLO answer has a few dozen at most).
    static constexpr std::size_t max_lines = 200;

private:
    std::string buffer_;
    std::vector<std::string> lines_;    // lines of the reply being read
};

/// Builds one reply from its raw lines ("250-x", "250 y"), without CRLF.
/// Exposed for tests; empty optional when a line is malformed or codes disagree.
std::optional<smtp::reply> parse_reply_lines(const std::vector<std::string>& lines, std::string* error = nullptr);

}  // namespace postern::smtp
