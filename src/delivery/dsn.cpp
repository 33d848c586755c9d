// delivery/dsn.cpp: RFC 3464 bounces and delay notices.
#include "delivery/dsn.hpp"

#include <algorithm>
#include <ctime>
#include <random>

#include <fmt/format.h>

namespace postern::delivery {

namespace {

bool non_ascii(const std::string& s) {
    for (unsigned char c : s)
        if (c >= 0x80) return true;
    return false;
}

/// Header field values must not break lines or carry control bytes from remote replies.
std::string one_line(std::string s) {
    for (auto& c : s)
        if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = ' ';
    return s;
}

std::string address_type(const std::string& address) { return non_ascii(address) ? "utf-8" : "rfc822"; }

/// RFC 6533: a report about a message that travelled with SMTPUTF8, or that names a
/// UTF-8 address, uses the "global" media types, whose fields and returned headers may
/// hold UTF-8 as it is; a report about an ASCII message keeps the RFC 3464 types that
/// every reader knows.
bool needs_global_types(const smtp::envelope& original, const std::vector<dsn_recipient>& recipients) {
    if (original.smtputf8 || non_ascii(original.mail_from)) return true;
    return std::any_of(recipients.begin(), recipients.end(),
                       [](const dsn_recipient& r) { return non_ascii(r.address) || non_ascii(r.orcpt); });
}

/// Ends `s` with CRLF unless it is empty or already does.
std::string with_final_crlf(std::string s) {
    if (!s.empty() && (s.size() < 2 || s.compare(s.size() - 2, 2, "\r\n") != 0)) s += "\r\n";
    return s;
}

/// `headers` cut to at most `limit` octets, at the end of the last whole line that fits:
/// a pathological header section must not make a notice as large as the message whose
/// return the limit refused. Nothing is left when not even the first line fits.
std::string within_limit(std::string headers, std::uint64_t limit) {
    if (headers.size() <= limit) return headers;
    const auto last_line_start = limit < 2 ? std::string::npos : headers.rfind("\r\n", limit - 2);
    headers.resize(last_line_start == std::string::npos ? 0 : last_line_start + 2);
    return headers;
}

/// What of the original goes back in the third part, and why not more.
struct returned_content {
    std::string text;                    // CRLF lines
    bool whole_message = false;          // false: the header section only
    bool message_over_limit = false;     // RET=FULL asked for a message larger than the limit
    bool headers_cut = false;            // the header section itself was over the limit
};

returned_content content_to_return(const std::string& message, bool full_requested, std::uint64_t limit) {
    returned_content r;
    if (full_requested && message.size() <= limit) {
        r.text = with_final_crlf(message);
        r.whole_message = true;
        return r;
    }
    // RFC 3461 §4.3 lets an MTA return only the headers even for RET=FULL; Postfix does
    // so above bounce_size_limit, and so do we.
    r.message_over_limit = full_requested;
    const std::string headers = header_section(message);
    std::string kept = within_limit(headers, limit);
    r.headers_cut = kept.size() < headers.size();
    r.text = with_final_crlf(std::move(kept));
    return r;
}

}  // namespace

bool wants_notice(const smtp::recipient& rcpt, dsn_kind kind) {
    // RFC 3461 §4.1: without NOTIFY, failures and (at the MTA's choice) delays are
    // reported, successes are not.
    if (rcpt.notify.empty()) return kind != dsn_kind::relayed;
    const std::string_view wanted = kind == dsn_kind::failure ? "FAILURE" : kind == dsn_kind::delay ? "DELAY" : "SUCCESS";
    std::string_view rest = rcpt.notify;
    for (;;) {
        const auto comma = rest.find(',');
        if (rest.substr(0, comma) == wanted) return true;   // NEVER matches none of them
        if (comma == std::string_view::npos) return false;
        rest.remove_prefix(comma + 1);
    }
}

std::string header_section(const std::string& body) {
    const auto end = body.find("\r\n\r\n");
    if (end == std::string::npos) return body.size() > 65536 ? body.substr(0, 65536) : body;
    return body.substr(0, end + 2);
}

std::string random_token() {
    std::random_device rd;
    return fmt::format("{:08x}{:08x}", rd(), rd());
}

namespace {

/// The notice's own header section, up to its MIME type.
std::string notice_headers(const smtp::envelope& original, dsn_kind kind, const std::string& reporting_mta,
                           smtp::sys_time now, const std::string& boundary) {
    std::string h;
    h += "From: Mail Delivery System <MAILER-DAEMON@" + reporting_mta + ">\r\n";
    h += "To: <" + original.mail_from + ">\r\n";
    switch (kind) {
    case dsn_kind::failure: h += "Subject: Undelivered Mail Returned to Sender\r\n"; break;
    case dsn_kind::delay: h += "Subject: Delayed Mail (still being retried)\r\n"; break;
    case dsn_kind::relayed: h += "Subject: Relayed Mail (no further notices)\r\n"; break;
    }
    h += "Date: " + smtp::rfc5322_date(now) + "\r\n";
    h += fmt::format("Message-ID: <{}.{}@{}>\r\n", original.id.empty() ? "dsn" : original.id, boundary, reporting_mta);
    h += "Auto-Submitted: auto-replied\r\n";   // RFC 3834
    h += "MIME-Version: 1.0\r\n";
    h += "Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"" + boundary + "\"\r\n";
    return h;
}

/// Part 1: for people.
std::string text_for_people(const std::vector<dsn_recipient>& recipients, dsn_kind kind,
                            const std::string& reporting_mta, const returned_content& returned,
                            std::uint64_t size_limit) {
    std::string text = "This is the mail system at " + reporting_mta + ".\r\n\r\n";
    switch (kind) {
    case dsn_kind::failure:
        text += "Your message could not be delivered to one or more recipients.\r\n"
                "It has been removed from the queue. The reasons follow.\r\n\r\n";
        break;
    case dsn_kind::delay:
        text += "Your message has not been delivered yet to one or more recipients.\r\n"
                "It is still in the queue and will be retried; you do not need to resend it.\r\n\r\n";
        break;
    case dsn_kind::relayed:
        text += "Your message was relayed to the recipients below, as you asked to be told.\r\n"
                "The next system does not report delivery, so no further notices will come.\r\n\r\n";
        break;
    }
    for (const auto& r : recipients) text += smtp::fold_line("<" + r.address + ">: " + one_line(r.diagnostic)) + "\r\n";
    text += "\r\n";
    if (returned.message_over_limit)
        text += fmt::format("The original message was larger than {} bytes; only its headers are included.\r\n",
                            size_limit);
    if (returned.headers_cut)
        text += fmt::format("The header section of the original message was larger than {} bytes; it has been "
                            "cut short.\r\n",
                            size_limit);
    if (returned.message_over_limit || returned.headers_cut) text += "\r\n";
    return text;
}

/// Part 2: for programs (RFC 3464 §2; its global form, RFC 6533, may hold UTF-8 addresses).
std::string delivery_status(const smtp::envelope& original, const std::vector<dsn_recipient>& recipients,
                            dsn_kind kind, const std::string& reporting_mta, smtp::sys_time now) {
    std::string status = "Reporting-MTA: dns; " + reporting_mta + "\r\n";
    if (!original.envid.empty()) status += smtp::fold_line("Original-Envelope-Id: " + one_line(original.envid)) + "\r\n";
    status += "Arrival-Date: " + smtp::rfc5322_date(original.received_at) + "\r\n";
    for (const auto& r : recipients) {
        status += "\r\n";
        if (!r.orcpt.empty()) status += smtp::fold_line("Original-Recipient: " + one_line(r.orcpt)) + "\r\n";
        status += smtp::fold_line("Final-Recipient: " + address_type(r.address) + "; " + r.address) + "\r\n";
        status += kind == dsn_kind::failure ? "Action: failed\r\n"
                  : kind == dsn_kind::delay ? "Action: delayed\r\n"
                                            : "Action: relayed\r\n";
        status += "Status: " + r.status + "\r\n";
        if (!r.remote_mta.empty()) status += smtp::fold_line("Remote-MTA: dns; " + one_line(r.remote_mta)) + "\r\n";
        status += smtp::fold_line("Diagnostic-Code: smtp; " + one_line(r.diagnostic)) + "\r\n";
        status += "Last-Attempt-Date: " + smtp::rfc5322_date(now) + "\r\n";
    }
    return status;
}

/// Part 3's headers: the original message (RET=FULL) or its headers (RFC 3462
/// text/rfc822-headers); their global forms (RFC 6532 message/global, RFC 6533
/// message/global-headers) for a message whose headers may hold UTF-8.
std::string returned_part_headers(const returned_content& returned, bool global) {
    std::string h;
    if (returned.whole_message) {
        h += global ? "Content-Type: message/global\r\n" : "Content-Type: message/rfc822\r\n";
        h += "Content-Description: Undelivered Message\r\n";
        // RFC 2046 §5.2.1: message/rfc822 is 7bit, 8bit or binary; say so when it is not 7bit.
        if (non_ascii(returned.text)) h += "Content-Transfer-Encoding: 8bit\r\n";
    } else if (global) {
        h += "Content-Type: message/global-headers\r\n";
        if (non_ascii(returned.text)) h += "Content-Transfer-Encoding: 8bit\r\n";
    } else {
        h += "Content-Type: text/rfc822-headers\r\n";
    }
    return h;
}

}  // namespace

dsn_message build_dsn(const smtp::envelope& original, const std::vector<dsn_recipient>& recipients, dsn_kind kind,
                      const std::string& reporting_mta, const std::string& message, smtp::sys_time now,
                      std::uint64_t size_limit, const unique_token_source& unique) {
    dsn_message dsn;
    auto& env = dsn.envelope;
    env.mail_from = "";   // RFC 5321 §4.5.5: the null reverse path
    smtp::recipient to;
    to.address = original.mail_from;
    env.recipients.push_back(to);
    env.received_at = now;
    env.receive_connector = "dsn";
    env.client_helo = reporting_mta;

    const std::string boundary = "postern-dsn-" + (unique ? unique() : random_token());
    const bool failure = kind == dsn_kind::failure;
    // RFC 3461 §4.3: RET=FULL asks for the whole message in a "failed" DSN only. RFC 8689
    // §5: a REQUIRETLS message's notice goes back with REQUIRETLS and without its body.
    env.requiretls = original.requiretls;
    const auto returned =
        content_to_return(message, failure && original.ret == "FULL" && !original.requiretls, size_limit);
    const bool global = needs_global_types(original, recipients);

    const std::string top_headers = notice_headers(original, kind, reporting_mta, now, boundary);
    std::string b = top_headers;
    b += "\r\nThis is a MIME-encapsulated message.\r\n\r\n";
    const std::string text = text_for_people(recipients, kind, reporting_mta, returned, size_limit);
    b += "--" + boundary + "\r\n";
    b += "Content-Type: text/plain; charset=utf-8\r\n";
    if (non_ascii(text)) b += "Content-Transfer-Encoding: 8bit\r\n";   // UTF-8 addresses or replies
    b += "\r\n" + text;

    const std::string status = delivery_status(original, recipients, kind, reporting_mta, now);
    b += "--" + boundary + "\r\n";
    if (global) {
        b += "Content-Type: message/global-delivery-status\r\n";
        if (non_ascii(status)) b += "Content-Transfer-Encoding: 8bit\r\n";
    } else {
        b += "Content-Type: message/delivery-status\r\n";
    }
    b += "\r\n" + status + "\r\n";

    b += "--" + boundary + "\r\n";
    b += returned_part_headers(returned, global);
    b += "\r\n" + returned.text;
    b += "\r\n--" + boundary + "--\r\n";

    // RFC 6531: UTF-8 in the envelope or in any header (ours, the status fields, the returned
    // headers) can go only to a next hop that offers SMTPUTF8, which the delivery side
    // enforces (5.6.7) for an envelope flagged so. UTF-8 in the returned body alone needs
    // only 8BITMIME, so it does not flag the notice: a hop without SMTPUTF8 still takes it.
    const std::string returned_headers = returned.whole_message ? header_section(returned.text) : returned.text;
    env.smtputf8 = global && (non_ascii(top_headers) || non_ascii(status) || non_ascii(returned_headers));
    env.body_8bit = non_ascii(b);
    dsn.body = std::move(b);
    return dsn;
}

}  // namespace postern::delivery
