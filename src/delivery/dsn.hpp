// delivery/dsn.hpp: bounces and delay notices as RFC 3464 delivery status notifications.
//
// Standards: RFC 3464 (message/delivery-status), RFC 6522 (multipart/report), RFC 3461 §6
// (null reverse path; ENVID and ORCPT echoed), RFC 3463 (status codes), RFC 6533 (UTF-8
// addresses: utf-8 address type).
// Security: a DSN goes to the original sender with the null sender (MAIL FROM:<>), so a
// DSN can never cause another DSN (RFC 5321 §4.5.5); we never build one for a message
// whose sender is null.
#pragma once

#include <string>
#include <vector>

#include "queue/message.hpp"

namespace postern::delivery {

enum class dsn_kind { failure, delay };

struct dsn_recipient {
    std::string address;
    std::string orcpt;
    std::string status;                  // "5.1.1", "4.4.1"
    std::string diagnostic;              // the remote reply or our reason, one line
    std::string remote_mta;              // host that answered, "" when none
};

struct dsn_message {
    queue::envelope envelope;            // null sender, one recipient: the original sender
    std::string body;                    // CRLF lines
};

/// Builds the DSN for `original`. `headers` are the original message's header section
/// (returned as text/rfc822-headers: RFC 3462 allows headers only, and it keeps bounces
/// small). `reporting_mta` is our host name. `now` is the Arrival/notification time.
dsn_message build_dsn(const queue::envelope& original, const std::vector<dsn_recipient>& recipients,
                      dsn_kind kind, const std::string& reporting_mta, const std::string& headers,
                      queue::sys_time now);

/// The header section of a message body (up to the first empty line), CRLF lines.
std::string header_section(const std::string& body);

}  // namespace postern::delivery
