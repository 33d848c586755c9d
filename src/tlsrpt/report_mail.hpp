// tlsrpt/report_mail.hpp: a TLS-RPT report as it travels (RFC 8460 §5): gzip-compressed
// JSON, named per §5.1, and for "mailto:" addresses a multipart/report message (§5.3).
//
// The message carries the report domain and submitter in its Subject and in the
// TLS-Report-Domain / TLS-Report-Submitter fields, the gzipped report as an
// application/tlsrpt+gzip attachment (base64), and "TLS-Required: No" (RFC 8689 §5): a
// report about TLS trouble must get through that trouble (§5.3: deliver reports despite
// TLS failures).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "smtp/envelope.hpp"

namespace postern::tlsrpt {

/// RFC 1952 gzip of `data` (zlib, best compression).
std::string gzip(std::string_view data);

/// RFC 8460 §5.1: "submitter!policy-domain!begin!end!unique.json.gz" (seconds since the epoch).
std::string report_filename(const std::string& submitter, const std::string& policy_domain, smtp::sys_time start,
                            smtp::sys_time end, const std::string& unique);

struct report_mail {
    std::string from;                    // the From: address
    std::vector<std::string> to;         // the rua mail addresses
    std::string policy_domain;
    std::string submitter;               // our domain (TLS-Report-Submitter)
    std::string report_id;               // the report's "report-id"
    smtp::sys_time start{}, end{};       // the report's date range
    smtp::sys_time now{};                // Date:
    std::string filename;                // report_filename()
    std::string gzipped;                 // the report
    std::string unique;                  // MIME boundary and Message-ID (random in production)
};

/// The whole message, CRLF lines, ready for the queue.
std::string compose(const report_mail& mail);

}  // namespace postern::tlsrpt
