// smtp/dot_writer.hpp: a body as it goes on the wire after 354 (RFC 5321 §4.5.2, the
// sending twin of smtp/dot_reader.hpp): a line that starts with '.' gets one more, and
// ".CRLF" ends it.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace postern::smtp {

/// Dot-stuffs one block of a body streamed in blocks; `at_line_start` says whether the
/// previous block ended a line (true for the first). Appends to `out`.
void append_dot_stuffed(std::string& out, std::string_view block, bool at_line_start);

/// The body as it goes on the wire after 354: dot-stuffed (RFC 5321 §4.5.2), ending in
/// CRLF, followed by ".\r\n".
std::string dot_stuff(std::string_view body);

/// The same wire form as pieces: views into `body` and into static strings, so a body
/// without dot lines goes out without being copied. At most `max_pieces`; std::nullopt when
/// the body needs more (then dot_stuff() is the better choice: many tiny writes would each
/// become a TLS record).
std::optional<std::vector<std::string_view>> dot_stuffed_pieces(std::string_view body, std::size_t max_pieces);

}  // namespace postern::smtp
