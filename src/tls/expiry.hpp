// tls/expiry.hpp: certificates about to expire, for `postern serve` and `config check`.
#pragma once

#include <string>
#include <vector>

#include "config/schema.hpp"
#include "tls/keyring/keyring.hpp"

namespace postern::tls {

inline constexpr int expiry_warning_days = 30;

struct expiry_warning {
    std::string label;
    entry_role role = entry_role::server;
    std::string subject;
    std::string not_after;   // ISO 8601
    int days_left = 0;       // negative once expired
    /// "certificate \"mx1\" (CN=mx1.example.test) expires in 12 days (2025-02-12T00:00:00Z)"
    std::string to_string() const;
};

/// Every certificate of the ring (server, root, intermediate, pinned peer) that expires
/// within `within_days`, or has expired, soonest first.
std::vector<expiry_warning> expiring_certificates(const keyring& ring, int within_days = expiry_warning_days);

/// Opens the key ring of cfg.tls (stash and all) and returns one line per warning, each
/// starting with the key ring's file name. Throws tls_error when it cannot be opened.
std::vector<std::string> expiry_warnings(const config::configuration& cfg, int within_days = expiry_warning_days);

}  // namespace postern::tls
