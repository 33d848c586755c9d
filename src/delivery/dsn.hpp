// delivery/dsn.hpp: bounces and delay notices as RFC 3464 delivery status notifications.
//
// Standards: RFC 3464 (message/delivery-status), RFC 6522 (multipart/report), RFC 3461 §6
// (null reverse path; ENVID and ORCPT echoed), RFC 3461 §4.1 (NOTIFY: which notices a
// recipient wants), §4.3 (RET: the whole message or its headers in a failure DSN),
// §5.2.2 ("relayed" notice after relaying to a non-DSN MTA), RFC 3463 (status codes),
// RFC 6533 (internationalised DSNs: the utf-8 address type, and message/global-delivery-status,
// message/global and message/global-headers about mail that travelled with SMTPUTF8).
// Security: a DSN goes to the original sender with the null sender (MAIL FROM:<>), so a
// DSN can never cause another DSN (RFC 5321 §4.5.5); we never build one for a message
// whose sender is null.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "smtp/envelope.hpp"
#include "smtp/message_header.hpp"

namespace postern::delivery {

/// failure: Action failed (a bounce); delay: Action delayed (still retried);
/// relayed: Action relayed (handed to a next hop that does not do DSN, RFC 3461 §5.2.2).
enum class dsn_kind { failure, delay, relayed };

/// Whether `rcpt`'s NOTIFY asks for this kind of notice (RFC 3461 §4.1):
///   NOTIFY absent ("")          -> failure and delay, not relayed (success);
///   NOTIFY=NEVER                -> none;
///   otherwise                   -> failure iff FAILURE, delay iff DELAY, relayed iff SUCCESS.
bool wants_notice(const smtp::recipient& rcpt, dsn_kind kind);

struct dsn_recipient {
    std::string address;
    std::string orcpt;
    std::string status;                  // "5.1.1", "4.4.1"
    std::string diagnostic;              // the remote reply or our reason, one line
    std::string remote_mta;              // host that answered, "" when none
    friend bool operator==(const dsn_recipient&, const dsn_recipient&) = default;
};

struct dsn_message {
    smtp::envelope envelope;            // null sender, one recipient: the original sender
    std::string body;                    // CRLF lines
};

/// Builds the DSN for `original`. `message` is the original message as queued (CRLF
/// lines); what of it goes back follows RET (RFC 3461 §4.3) and `size_limit` (the
/// configured bounce_size_limit, as Postfix's):
///  - a failure DSN for a message received with RET=FULL returns all of `message` as
///    message/rfc822, when it is no larger than `size_limit`;
///  - otherwise (RET=HDRS, RET absent, delay and relayed notices, or a RET=FULL message
///    over the limit) only its header section goes back, as text/rfc822-headers (RFC 3462),
///    which keeps notices small; the text part says when the limit was the reason. A
///    header section over the limit is cut at the last whole line that fits.
/// Passing just the header section still works (the older calling convention): a RET=FULL
/// failure DSN then returns a message/rfc822 part that holds the headers only.
/// When `original` was received with SMTPUTF8, or a reported address is not ASCII, the
/// parts take their RFC 6533 global types (message/global-delivery-status, message/global,
/// message/global-headers); the DSN's envelope is flagged SMTPUTF8 when UTF-8 then stands
/// in an address or a header, so that it goes only to next hops that offer SMTPUTF8.
/// `recipients` should already be filtered with wants_notice(). `reporting_mta` is our
/// host name. `now` is the notification time. `unique` gives the MIME boundary and the
/// unique part of the Message-ID (default: random); with a fixed one and a fixed `now`
/// the notice is the same octets every time, so tests can compare it whole.
using unique_token_source = std::function<std::string()>;
std::string random_token();   // 16 hex digits from the system's random device
dsn_message build_dsn(const smtp::envelope& original, const std::vector<dsn_recipient>& recipients,
                      dsn_kind kind, const std::string& reporting_mta, const std::string& message,
                      smtp::sys_time now, std::uint64_t size_limit,
                      const unique_token_source& unique = random_token);

using smtp::fold_line;   // RFC 5322 header folding (smtp/message_header.hpp)

/// The header section of a message body (up to the first empty line), CRLF lines.
std::string header_section(const std::string& body);

}  // namespace postern::delivery
