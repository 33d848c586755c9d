// smtp/capabilities.hpp: what a server offers in its EHLO reply (RFC 5321 §4.1.1.1).
#pragma once

#include <cstdint>

#include "smtp/reply.hpp"

namespace postern::smtp {

/// What the next hop offered in its EHLO reply (RFC 5321 §4.1.1.1).
struct capabilities {
    bool esmtp = false;                 // EHLO answered 250 (false after a HELO fallback)
    bool starttls = false;
    bool pipelining = false;
    bool eightbitmime = false;
    bool smtputf8 = false;
    bool requiretls = false;             // RFC 8689
    bool enhanced_status_codes = false;
    bool size = false;
    std::uint64_t size_limit = 0;       // 0: SIZE without a limit
    bool dsn = false;
};
capabilities parse_ehlo(const smtp::reply& reply);

}  // namespace postern::smtp
