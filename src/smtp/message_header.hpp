// smtp/message_header.hpp: header fields of the messages Postern writes itself (DSNs,
// TLS-RPT reports): RFC 5322 dates and folding.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "smtp/envelope.hpp"

namespace postern::smtp {

/// RFC 5322 §3.3: "Thu, 03 Dec 2026 14:29:03 +0000" (UTC).
std::string rfc5322_date(sys_time t);

/// RFC 5322 §2.1.1: `line` broken into lines of at most `soft` octets where a space
/// allows, never more than `hard`; continuation lines start with a space (header folding).
/// Without CRLF at the end.
std::string fold_line(std::string_view line, std::size_t soft = 78, std::size_t hard = 998);

}  // namespace postern::smtp
