// tlsrpt/record.hpp: a policy domain's TLS-RPT record (RFC 8460 §3), the TXT record at
// _smtp._tls.DOMAIN that says where its reports go.
//
//   "v=TLSRPTv1; rua=mailto:tlsrpt@example.net,https://reports.example.net/v1/tlsrpt"
//
// §3: records that do not start with "v=TLSRPTv1" are discarded; when not exactly one is
// left, or it is malformed, the domain does not take reports. "rua" is required; its URIs
// are "mailto:" (an address, percent-decoded) or "https:"; other schemes are skipped.
// Extension fields (name=value) are allowed and ignored.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace postern::tlsrpt {

struct report_uri {
    enum class scheme { mailto, https };
    scheme what = scheme::mailto;
    std::string uri;           // as published, for logs
    std::string address;       // mailto: the mail address
    std::string host;          // https: the host, port and path (with query)
    std::uint16_t port = 443;
    std::string path;
    friend bool operator==(const report_uri&, const report_uri&) = default;
};

struct record {
    std::vector<report_uri> rua;   // the usable ones, in published order, at least one
};

/// One TXT record's text; nullopt with `error` when it is not a valid TLS-RPT record.
std::optional<record> parse_record(std::string_view text, std::string& error);

/// §3: the TXT records at _smtp._tls.DOMAIN (each one's strings joined) -> the record, or
/// nullopt with `error` (no record, several, or a malformed one).
std::optional<record> select_record(const std::vector<std::string>& texts, std::string& error);

/// One URI of a rua list; nullopt (with `error`) for an unknown scheme or a malformed one.
std::optional<report_uri> parse_report_uri(std::string_view uri, std::string& error);

}  // namespace postern::tlsrpt
