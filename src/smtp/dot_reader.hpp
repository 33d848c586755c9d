// smtp/dot_reader.hpp: reads a DATA body up to <CRLF>.<CRLF>.
//
// Standards: RFC 5321 §4.1.1.4 (DATA), §4.5.2 (dot transparency), §4.5.3.1.6 (lines of
// at most 1000 octets including CRLF), §6.3 (loop detection by counting Received:).
// Security: the end of data is <CRLF>.<CRLF> and nothing else. A bare CR, a bare LF, a
// NUL or an overlong line is never repaired; the reader keeps reading up to the real
// end, keeps nothing, and the session answers 550 5.6.0. Repairing is how SMTP smuggling
// works (<LF>.<LF>, <CR>.<CR>, <CRLF>.<LF> ... read as the end by one hop and not by the
// next), see DESIGN §5.
// Size: the unstuffed message is counted; beyond max_size nothing more is kept (552 5.3.4
// at the end). Received: headers in the header section are counted (554 5.4.6), and the
// header section is measured (max_header_size).
// Not here: the Received: header we add and the decision which reply to send (server_fsm).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace postern::smtp {

struct dot_limits {
    std::uint64_t max_size = 35ull * 1024 * 1024;     // unstuffed message octets
    std::uint64_t max_header_size = 256ull * 1024;    // header section octets
    std::uint32_t max_hop_count = 50;                 // Received: headers allowed
};

enum class data_verdict {
    ok,
    bare_line_ending,      // CR not followed by LF, or LF not preceded by CR -> 550 5.6.0
    nul,                   // NUL octet -> 550 5.6.0
    line_too_long,         // over 1000 octets with CRLF -> 550 5.6.0
    too_big,               // over max_size -> 552 5.3.4
    header_too_big,        // header section over max_header_size -> 552 5.3.4
    too_many_hops,         // more Received: than max_hop_count -> 554 5.4.6
};

std::string_view to_string(data_verdict v);

class dot_reader {
public:
    static constexpr std::size_t max_line = 1000;     // octets including CRLF

    explicit dot_reader(dot_limits limits);

    /// Consumes bytes up to and including the terminating <CRLF>.<CRLF>; returns how many
    /// were consumed. Bytes after the end belong to the next command (PIPELINING).
    std::size_t feed(std::string_view bytes);

    /// Starts the body with `prefix` (our Received: header, which is not part of what the
    /// client sends and counts toward no limit) and makes room for `expected` more octets,
    /// so a large message is read into one buffer without growing and copying it.
    void begin_with(std::string prefix, std::size_t expected);

    bool done() const { return state_ == state::done; }
    /// The first problem seen (syntax problems win over size problems); ok when none.
    data_verdict verdict() const;
    /// The message with dot-stuffing removed, CRLF line endings, without the final
    /// ".CRLF". Empty whenever verdict() is not ok.
    std::string take_body();
    /// The body read so far, handed out mid-message (the session spools a large body as it
    /// arrives); the reader goes on with an empty buffer. Empty once a problem was seen.
    std::string take_buffered();
    std::size_t buffered() const { return body_.size(); }

    std::uint64_t size() const { return size_; }               // unstuffed octets
    std::uint32_t received_headers() const { return hops_; }
    /// The header section has "TLS-Required: No" (RFC 8689 §5).
    bool tls_required_no() const { return tls_required_no_; }
    std::uint64_t header_size() const { return header_size_; }

private:
    enum class state { line_start, in_line, after_cr, dot_at_start, dot_cr, done };

    /// The fast path of the body section: whole lines of plain octets, copied in one
    /// piece. Consumes a prefix of `bytes` and leaves state_ at line_start or in_line;
    /// stops before anything the state machine must look at (a dot at the start of a
    /// line, a CR not yet followed by its LF, a bare CR or LF, a NUL).
    std::size_t plain_lines(std::string_view bytes);
    void content(char c);                  // one octet of the current line's content
    void end_of_line();                    // a CRLF ended the current line
    void mark(data_verdict v);

    dot_limits limits_;
    state state_ = state::line_start;
    std::string body_;
    bool keeping_ = true;                  // false once any problem is found
    data_verdict syntax_ = data_verdict::ok;
    data_verdict limit_ = data_verdict::ok;
    std::size_t line_length_ = 0;          // transmitted octets of the current line
    bool line_counted_long_ = false;
    std::uint64_t size_ = 0;
    std::uint64_t header_size_ = 0;
    std::uint32_t hops_ = 0;
    bool in_header_ = true;
    char prefix_[32] = {};                 // first octets of a header line: "Received:", "TLS-Required: No"
    bool tls_required_no_ = false;
    std::size_t prefix_length_ = 0;
};

}  // namespace postern::smtp
