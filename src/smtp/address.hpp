// smtp/address.hpp: the arguments of MAIL FROM and RCPT TO.
//
// Standards: RFC 5321 §4.1.2 (Path, Mailbox, Local-part, Domain, address literals),
// §4.1.1.11 (parameters), §4.5.3.1 (64-octet local part, 255-octet domain, 256-octet path),
// RFC 1870 (SIZE), RFC 6152 (BODY), RFC 6531 (SMTPUTF8: UTF-8 in local part and domain,
// only when the MAIL command carries SMTPUTF8), RFC 3461 (RET, ENVID, NOTIFY, ORCPT, xtext).
// Source routes ("<@a,@b:user@c>") are accepted and ignored (RFC 5321 §4.1.2 / C).
// The address is returned as the client wrote it between the brackets, minus any source
// route; quoted local parts keep their quotes.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace postern::smtp {

enum class address_error {
    none,
    syntax,                  // not "FROM:<...>" / "TO:<...>" at all -> 501 5.5.4
    bad_address,             // the path itself is malformed -> 501 5.1.7 / 5.1.3
    utf8_not_allowed,        // UTF-8 without SMTPUTF8 -> 553 5.6.7
    unsupported_parameter,   // unknown or not allowed here -> 555 5.5.4
    bad_parameter,           // known keyword, bad value or repeated -> 501 5.5.4
};

enum class body_type { unspecified, seven_bit, eight_bit_mime };

struct mail_from_args {
    std::string address;                   // "" = null reverse path "<>"
    std::optional<std::uint64_t> size;     // SIZE=
    body_type body = body_type::unspecified;
    bool smtputf8 = false;
    bool requiretls = false;               // REQUIRETLS (RFC 8689)
    std::string ret;                       // "FULL" | "HDRS" | ""
    std::string envid;                     // xtext as sent
};

struct rcpt_to_args {
    std::string address;
    bool postmaster = false;               // "<Postmaster>" without a domain (RFC 5321 §4.5.1)
    std::string notify;                    // upper-case, "" when absent
    std::string orcpt;                     // "rfc822;user@host" as sent
};

template <typename T>
struct parse_result {
    address_error error = address_error::none;
    std::string detail;                    // for the protocol log
    T value;
    bool ok() const { return error == address_error::none; }
};

/// `argument` is everything after "MAIL ", e.g. "FROM:<a@b> SIZE=100".
parse_result<mail_from_args> parse_mail_from(std::string_view argument);
/// `argument` is everything after "RCPT "; `smtputf8` is whether MAIL carried SMTPUTF8.
parse_result<rcpt_to_args> parse_rcpt_to(std::string_view argument, bool smtputf8);

/// RFC 5321 Domain or address-literal, as in EHLO; UTF-8 U-labels when `utf8`.
bool valid_domain(std::string_view domain, bool utf8 = false);
bool valid_address_literal(std::string_view literal);     // "[192.0.2.1]", "[IPv6:...]"
/// The domain of "local@domain" (after the last '@'), lower-cased ASCII; "" when none.
std::string domain_of(std::string_view address);
/// RFC 3629 well-formedness (no overlongs, no surrogates, at most U+10FFFF).
bool valid_utf8(std::string_view s);
/// RFC 3461 §4 xtext: "+", "=", controls, space and octets above 126 become "+XX"
/// (upper-case hex); every other printable stays as it is. "a+b=c" -> "a+2Bb+3Dc".
std::string xtext_encode(std::string_view s);

}  // namespace postern::smtp
