// smtp/dot_writer.cpp: dot-stuffing (see dot_writer.hpp).
#include "smtp/dot_writer.hpp"

#include <algorithm>
#include <bit>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace postern::smtp {

namespace {

/// Where in `body`, at or after `from`, an LF is followed by a dot (a line that needs
/// stuffing); npos when nowhere. Sixteen positions per compare: a memchr per line, which
/// find("\n.") amounts to, was a visible share of the CPU spent relaying large messages.
std::size_t find_line_starting_with_dot(std::string_view body, std::size_t from) {
    const char* const begin = body.data();
    const char* const end = begin + body.size();
    const char* p = begin + std::min(from, body.size());
#if defined(__SSE2__)
    const __m128i lf = _mm_set1_epi8('\n'), dot = _mm_set1_epi8('.');
    for (; end - p > 16; p += 16) {   // p + 1 .. p + 16 is readable
        const __m128i here = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
        const __m128i next = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 1));
        const int hits = _mm_movemask_epi8(_mm_and_si128(_mm_cmpeq_epi8(here, lf), _mm_cmpeq_epi8(next, dot)));
        if (hits != 0) return static_cast<std::size_t>(p - begin) + static_cast<std::size_t>(std::countr_zero(
                                                                         static_cast<unsigned>(hits)));
    }
#endif
    for (; end - p > 1; ++p)
        if (p[0] == '\n' && p[1] == '.') return static_cast<std::size_t>(p - begin);
    return std::string_view::npos;
}

}  // namespace

void append_dot_stuffed(std::string& out, std::string_view block, bool at_line_start) {
    if (at_line_start && !block.empty() && block.front() == '.') out += '.';
    std::size_t from = 0;
    for (;;) {
        const auto stuffed = find_line_starting_with_dot(block, from);
        if (stuffed == std::string_view::npos) break;
        out.append(block.substr(from, stuffed + 1 - from));
        out += '.';
        from = stuffed + 1;
    }
    out.append(block.substr(from));
}

std::string dot_stuff(std::string_view body) {
    std::string out;
    out.reserve(body.size() + 8);
    // RFC 5321 §4.5.2: a line that starts with '.' gets one more. Whole stretches between
    // such lines are copied at once: most bodies have none, and a byte-by-byte loop was a
    // large share of the CPU spent relaying big messages.
    append_dot_stuffed(out, body, /*at_line_start=*/true);
    if (!body.empty() && body.back() != '\n') out += "\r\n";   // the final CRLF before the dot
    out += ".\r\n";
    return out;
}

std::optional<std::vector<std::string_view>> dot_stuffed_pieces(std::string_view body, std::size_t max_pieces) {
    static constexpr std::string_view dot = ".", crlf = "\r\n", end = ".\r\n";
    std::vector<std::string_view> pieces;
    auto add = [&](std::string_view p) {
        if (!p.empty()) pieces.push_back(p);
        return pieces.size() <= max_pieces;
    };
    std::size_t from = 0;
    if (!body.empty() && body.front() == '.' && !add(dot)) return std::nullopt;
    for (;;) {
        const auto stuffed = find_line_starting_with_dot(body, from);
        if (stuffed == std::string_view::npos) break;
        if (!add(body.substr(from, stuffed + 1 - from)) || !add(dot)) return std::nullopt;
        from = stuffed + 1;
    }
    if (!add(body.substr(from))) return std::nullopt;
    if (!body.empty() && body.back() != '\n' && !add(crlf)) return std::nullopt;
    if (!add(end)) return std::nullopt;
    return pieces;
}

}  // namespace postern::smtp
