// smtp/dot_reader.cpp: the DATA body reader (RFC 5321 §4.1.1.4, §4.5.2, §4.5.3.1.6).
//
// One octet at a time through a small state machine, with a fast path for the body
// section, where almost every line is plain text: plain_lines() finds CR, LF and NUL 16
// octets at a time and copies a run of whole lines at once. "Line start" exists only after a CRLF:
// after a bare CR or a bare LF the reader is still inside the same line, so no
// smuggled "<LF>.<LF>" can look like the end of data.
#include "smtp/dot_reader.hpp"

#include <algorithm>
#include <bit>
#include <cctype>
#include <cstring>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace postern::smtp {

std::string_view to_string(data_verdict v) {
    switch (v) {
    case data_verdict::ok: return "ok";
    case data_verdict::bare_line_ending: return "bare CR or LF in message";
    case data_verdict::nul: return "NUL in message";
    case data_verdict::line_too_long: return "line over 1000 octets in message";
    case data_verdict::too_big: return "message over max_message_size";
    case data_verdict::header_too_big: return "header section over max_header_size";
    case data_verdict::too_many_hops: return "more Received: headers than max_hop_count";
    }
    return "?";
}

dot_reader::dot_reader(dot_limits limits) : limits_(limits) {}

data_verdict dot_reader::verdict() const {
    return syntax_ != data_verdict::ok ? syntax_ : limit_;
}

void dot_reader::begin_with(std::string prefix, std::size_t expected) {
    body_ = std::move(prefix);
    body_.reserve(body_.size() + expected);
}

std::string dot_reader::take_buffered() {
    if (!keeping_) return {};
    std::string out = std::move(body_);
    body_.clear();
    return out;
}

std::string dot_reader::take_body() {
    if (verdict() != data_verdict::ok) return {};
    return std::move(body_);
}

void dot_reader::mark(data_verdict v) {
    const bool syntax = v == data_verdict::bare_line_ending || v == data_verdict::nul ||
                        v == data_verdict::line_too_long;
    auto& slot = syntax ? syntax_ : limit_;
    if (slot == data_verdict::ok) slot = v;
    if (keeping_) {
        keeping_ = false;
        std::string().swap(body_);          // nothing of a rejected message is kept
    }
}

void dot_reader::content(char c) {
    ++line_length_;
    ++size_;
    if (c == '\0') mark(data_verdict::nul);
    if (size_ > limits_.max_size) mark(data_verdict::too_big);
    if (in_header_) {
        ++header_size_;
        if (header_size_ > limits_.max_header_size) mark(data_verdict::header_too_big);
        if (prefix_length_ < sizeof prefix_) prefix_[prefix_length_++] = c;
    }
    if (line_length_ > max_line - 2 && !line_counted_long_) {
        // The CRLF still has to come: content beyond 998 octets makes the line too long.
        line_counted_long_ = true;
        mark(data_verdict::line_too_long);
    }
    if (keeping_) body_.push_back(c);
}

void dot_reader::end_of_line() {
    size_ += 2;
    if (size_ > limits_.max_size) mark(data_verdict::too_big);
    if (in_header_) {
        header_size_ += 2;
        if (header_size_ > limits_.max_header_size) mark(data_verdict::header_too_big);
        if (prefix_length_ == 0) {
            in_header_ = false;             // RFC 5322 §2.1: an empty line ends the header
        } else {
            const std::string_view line(prefix_, prefix_length_);
            auto starts = [&](std::string_view name) {
                if (line.size() < name.size()) return false;
                for (std::size_t i = 0; i < name.size(); ++i)
                    if (std::tolower(static_cast<unsigned char>(line[i])) != name[i]) return false;
                return true;
            };
            if (starts("received:") && ++hops_ > limits_.max_hop_count) mark(data_verdict::too_many_hops);
            // RFC 8689 §5: "TLS-Required: No" (the value alone on the field's first line).
            if (starts("tls-required:") && prefix_length_ < sizeof prefix_) {
                auto value = line.substr(13);
                while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
                while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.remove_suffix(1);
                if (value.size() == 2 && std::tolower(static_cast<unsigned char>(value[0])) == 'n' &&
                    std::tolower(static_cast<unsigned char>(value[1])) == 'o')
                    tls_required_no_ = true;
            }
        }
    }
    if (keeping_) body_.append("\r\n");
    line_length_ = 0;
    line_counted_long_ = false;
    prefix_length_ = 0;
}

namespace {

/// Bit k set when octet k of [at, at + n) (n <= 16) is CR, LF or NUL.
std::uint32_t line_octets_mask(const char* at, std::size_t n) {
#if defined(__SSE2__)
    if (n == 16) {
        const __m128i block = _mm_loadu_si128(reinterpret_cast<const __m128i*>(at));
        const __m128i hits = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(block, _mm_set1_epi8('\r')),
                                                       _mm_cmpeq_epi8(block, _mm_set1_epi8('\n'))),
                                          _mm_cmpeq_epi8(block, _mm_setzero_si128()));
        return static_cast<std::uint32_t>(_mm_movemask_epi8(hits));
    }
#endif
    std::uint32_t mask = 0;
    for (std::size_t k = 0; k < n; ++k)
        if (at[k] == '\r' || at[k] == '\n' || at[k] == '\0') mask |= 1u << k;
    return mask;
}

}  // namespace

std::size_t dot_reader::plain_lines(std::string_view bytes) {
    const char* const begin = bytes.data();
    const char* const end = begin + bytes.size();
    const char* line = begin;               // where the current line's octets in `bytes` start
    std::size_t carried = line_length_;     // octets of the current line before `bytes`
    const char* stop = end;
    bool at_line_start = false;
    auto check_length = [&](const char* upto) {
        if (carried + static_cast<std::size_t>(upto - line) > max_line - 2 && !line_counted_long_) {
            line_counted_long_ = true;
            mark(data_verdict::line_too_long);
        }
    };
    for (const char* block = begin; block < end && stop == end; block += 16) {
        std::uint32_t mask = line_octets_mask(block, std::min<std::size_t>(16, end - block));
        for (; mask != 0; mask &= mask - 1) {
            const char* at = block + std::countr_zero(mask);
            if (at < line) continue;        // the LF of a CRLF already taken
            if (*at != '\r' || at + 1 == end || at[1] != '\n') {
                // A bare LF or CR, a NUL, or a CR whose LF is still to come: the state
                // machine takes it from here, inside the line.
                stop = at;
                break;
            }
            check_length(at);
            carried = 0;
            line_counted_long_ = false;
            line = at + 2;
            if (line == end || *line == '.') {
                stop = line;
                at_line_start = true;
                break;
            }
        }
    }
    if (!at_line_start) check_length(stop);
    const auto used = static_cast<std::size_t>(stop - begin);
    size_ += used;
    if (size_ > limits_.max_size) mark(data_verdict::too_big);
    if (keeping_) body_.append(begin, used);
    if (at_line_start) {
        state_ = state::line_start;
        line_length_ = 0;
        prefix_length_ = 0;
    } else {
        state_ = state::in_line;
        line_length_ = carried + static_cast<std::size_t>(stop - line);
    }
    return used;
}

std::size_t dot_reader::feed(std::string_view bytes) {
    std::size_t i = 0;
    const std::size_t n = bytes.size();
    while (i < n && state_ != state::done) {
        const char c = bytes[i];
        if (!in_header_ && (state_ == state::in_line || (state_ == state::line_start && c != '.'))) {
            if (const std::size_t used = plain_lines(bytes.substr(i)); used > 0) {
                i += used;
                continue;
            }
        }
        switch (state_) {
        case state::line_start:
            if (c == '.') {
                state_ = state::dot_at_start;
                ++line_length_;             // the stuffed dot is transmitted, not stored
            } else if (c == '\r') {
                state_ = state::after_cr;
            } else if (c == '\n') {
                mark(data_verdict::bare_line_ending);
                content(c);
                state_ = state::in_line;
            } else {
                content(c);
                state_ = state::in_line;
            }
            ++i;
            break;

        case state::in_line:
            if (c == '\r') {
                state_ = state::after_cr;
                ++i;
            } else if (c == '\n') {
                mark(data_verdict::bare_line_ending);
                content(c);
                ++i;
            } else {
                content(c);
                ++i;
            }
            break;

        case state::after_cr:
            if (c == '\n') {
                end_of_line();
                state_ = state::line_start;
                ++i;
            } else {
                // The CR we saw was bare; this octet is read as if inside the line.
                mark(data_verdict::bare_line_ending);
                content('\r');
                state_ = state::in_line;     // re-examine c there (it may be another CR)
            }
            break;

        case state::dot_at_start:
            if (c == '\r') {
                state_ = state::dot_cr;
                ++i;
            } else {
                // RFC 5321 §4.5.2: a leading dot is removed; c is ordinary content.
                state_ = state::in_line;     // re-examine c there
            }
            break;

        case state::dot_cr:
            if (c == '\n') {
                state_ = state::done;        // <CRLF>.<CRLF>: the only end of data
                ++i;
            } else {
                // ".<CR>" then something else: a bare CR inside a line that held a dot.
                mark(data_verdict::bare_line_ending);
                content('.');
                content('\r');
                state_ = state::in_line;     // re-examine c there
            }
            break;

        case state::done:
            break;
        }
    }
    return i;
}

}  // namespace postern::smtp
