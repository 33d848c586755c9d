// tls/keyring/request_log.hpp: <keyring>.requests.json, the key ring's companion file.
//
// It records every certificate request (what was asked for, when, and what became of it)
// and which server certificate is the default. The default lives here rather than in a
// PKCS#12 attribute so the key ring keeps only standard attributes that `openssl pkcs12`
// and Windows read without surprise. Mode 0600, rewritten atomically.
//
// {"default": "mx1", "requests": [{"label": "mx1", "date": "2025-01-31T12:00:00Z",
//   "subject": "CN=mx1.example.test", "names": ["DNS:mx1.example.test"],
//   "key_type": "ecdsa-p256", "public_key_sha256": "…", "state": "pending"}]}
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace postern::tls {

enum class request_state { pending, installed, cancelled };

struct request_record {
    std::string label;
    std::string date;                 // ISO 8601 UTC, when the request was made
    std::string subject;
    std::vector<std::string> names;   // "DNS:…", "IP:…"
    std::string key_type;
    std::string public_key_sha256;
    request_state state = request_state::pending;
    std::string state_date;           // when it was installed or cancelled ("" while pending)
    std::string renews;               // `keyring renew`: the label whose certificate it replaces ("" = none)
};

std::string to_string(request_state state);

class request_log {
public:
    static std::filesystem::path path_for(const std::filesystem::path& keyring_file);

    /// Reads the log next to `keyring_file`; an absent file is an empty log. Throws tls_error.
    static request_log load(const std::filesystem::path& keyring_file);
    void save(const std::filesystem::path& keyring_file) const;

    std::string default_label;
    std::vector<request_record> requests;

    request_record* find_pending_by_key(const std::string& public_key_sha256);
    const request_record* find_pending_by_key(const std::string& public_key_sha256) const;
    /// Keeps labels in step with `keyring label OLD NEW`.
    void rename(const std::string& from, const std::string& to);

    nlohmann::json to_json() const;
};

/// "2025-01-31T12:00:00Z" for now.
std::string now_text();

}  // namespace postern::tls
