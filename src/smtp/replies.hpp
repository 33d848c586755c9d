// smtp/replies.hpp: every reply the receive side sends, in one reviewable place.
//
// Standards: RFC 5321 §4.2.2-4.2.3 (codes), RFC 3463 (enhanced codes), RFC 3207 (STARTTLS),
// RFC 1870 (SIZE), RFC 6531 (SMTPUTF8), RFC 2920 (PIPELINING).
// The replies marked "DESIGN §5" are a contract that tests and other people's scripts
// rely on: change their code or text only together with DESIGN.md.
// Replies that announce the end of the session (221, 421) start with our host name,
// as RFC 5321 §4.2 and §3.8 ask.
#pragma once

#include <string>
#include <string_view>

#include "smtp/reply.hpp"

namespace postern::smtp::replies {

inline std::string with_host(std::string_view host, std::string_view text) {
    std::string s(host);
    s += ' ';
    s += text;
    return s;
}

// --- greeting and session end -------------------------------------------------------
inline reply greeting(std::string_view host) { return {220, {}, with_host(host, "ESMTP Postern")}; }
/// DESIGN §5: a client that matches no receive connector (then only QUIT).
inline reply no_service(std::string_view host) { return {554, {5, 7, 1}, with_host(host, "No SMTP service for this client")}; }
/// DESIGN §5: too many connections (overall or from one address).
inline reply too_many_connections(std::string_view host) { return {421, {4, 7, 0}, with_host(host, "Too many connections, try again later")}; }
inline reply closing(std::string_view host) { return {221, {2, 0, 0}, with_host(host, "Bye")}; }
/// DESIGN §5: inactivity or whole-session timeout.
inline reply timeout(std::string_view host) { return {421, {4, 4, 2}, with_host(host, "Timeout exceeded, closing connection")}; }
/// DESIGN §5: stop or reload.
inline reply shutting_down(std::string_view host) { return {421, {4, 3, 2}, with_host(host, "Service shutting down, closing connection")}; }
/// DESIGN §3 max_protocol_errors.
inline reply too_many_errors(std::string_view host) { return {421, {4, 7, 0}, with_host(host, "Too many errors, closing connection")}; }
/// DESIGN §3 max_junk_commands: too many NOOP/VRFY/RSET/... without a message.
inline reply too_many_junk_commands(std::string_view host) { return {421, {4, 7, 0}, with_host(host, "Too many commands without a message, closing connection")}; }
/// Postfix's answer to HTTP requests sent to an SMTP port (cross-protocol attacks).
inline reply forbidden_command(std::string_view host) { return {221, {2, 7, 0}, with_host(host, "This is an SMTP server, closing connection")}; }

// --- positive replies -----------------------------------------------------------------
inline reply helo_ok(std::string_view host) { return {250, {}, std::string(host)}; }
inline reply ok() { return {250, {2, 0, 0}, "OK"}; }
inline reply reset_ok() { return {250, {2, 0, 0}, "Reset OK"}; }
inline reply sender_ok() { return {250, {2, 1, 0}, "Sender OK"}; }
inline reply recipient_ok() { return {250, {2, 1, 5}, "Recipient OK"}; }
inline reply start_data() { return {354, {}, "End data with <CR><LF>.<CR><LF>"}; }
inline reply queued(std::string_view id) { return {250, {2, 0, 0}, "OK queued as " + std::string(id)}; }
inline reply ready_to_start_tls() { return {220, {2, 0, 0}, "Ready to start TLS"}; }
/// RFC 5321 §3.5.3: 252 when we will not verify but accept.
inline reply cannot_verify() { return {252, {2, 5, 0}, "Cannot VRFY user, but will accept message and attempt delivery"}; }
inline reply help() { return {214, {2, 0, 0}, "Commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT VRFY HELP STARTTLS"}; }

// --- syntax and sequence (RFC 5321 §4.2.4, RFC 3463 X.5.x) -----------------------------
/// DESIGN §5: command line over 2048 octets.
inline reply line_too_long() { return {500, {5, 5, 2}, "Line too long"}; }
/// DESIGN §5: NUL in a command line.
inline reply nul_in_command() { return {500, {5, 5, 2}, "Syntax error, NUL in command line"}; }
inline reply unknown_command() { return {500, {5, 5, 2}, "Command unrecognized"}; }
inline reply not_implemented() { return {502, {5, 5, 1}, "Command not implemented"}; }
inline reply no_parameters_allowed() { return {501, {5, 5, 4}, "Syntax error, no parameters allowed"}; }
inline reply argument_required() { return {501, {5, 5, 4}, "Syntax error, argument required"}; }
inline reply helo_syntax() { return {501, {5, 5, 4}, "Syntax error, a domain or address literal is required"}; }
inline reply mail_syntax() { return {501, {5, 5, 4}, "Syntax error, expected MAIL FROM:<address>"}; }
inline reply rcpt_syntax() { return {501, {5, 5, 4}, "Syntax error, expected RCPT TO:<address>"}; }
inline reply bad_sender_address() { return {501, {5, 1, 7}, "Bad sender address syntax"}; }
inline reply bad_recipient_address() { return {501, {5, 1, 3}, "Bad recipient address syntax"}; }
inline reply bad_parameter() { return {501, {5, 5, 4}, "Invalid parameter value"}; }
/// RFC 5321 §4.1.1.11: parameters that were not advertised or are not recognized.
inline reply unsupported_parameter() { return {555, {5, 5, 4}, "Unsupported parameter"}; }
/// RFC 6531 §3.7.4.1: a UTF-8 address in a transaction without SMTPUTF8.
inline reply utf8_needs_smtputf8() { return {553, {5, 6, 7}, "Non-ASCII address requires SMTPUTF8"}; }
/// RFC 8689 §4.1 and RFC 3207 §4: REQUIRETLS is only for a transaction over TLS.
inline reply requiretls_needs_tls() { return {530, {5, 7, 10}, "REQUIRETLS needs TLS: STARTTLS first"}; }
inline reply helo_first() { return {503, {5, 5, 1}, "Send EHLO or HELO first"}; }
inline reply nested_mail() { return {503, {5, 5, 1}, "Nested MAIL command"}; }
inline reply mail_first() { return {503, {5, 5, 1}, "Need MAIL command first"}; }
inline reply rcpt_first() { return {503, {5, 5, 1}, "Need RCPT command first"}; }
/// RFC 5321 §3.3: DATA with no accepted recipient.
inline reply no_valid_recipients() { return {554, {5, 5, 1}, "No valid recipients"}; }
inline reply transaction_in_progress() { return {503, {5, 5, 1}, "Mail transaction in progress"}; }
/// RFC 5321 §3.1: after a 554 greeting, everything but QUIT.
inline reply no_service_only_quit() { return {503, {5, 5, 1}, "No SMTP service here, only QUIT"}; }

// --- TLS (RFC 3207) -----------------------------------------------------------------
/// DESIGN §5: MAIL/RCPT/DATA before STARTTLS on a require_tls connector.
inline reply starttls_required() { return {530, {5, 7, 0}, "Must issue a STARTTLS command first"}; }
/// DESIGN §5 and RFC 3207 §4.1: mutual_tls and the client is not a partner.
inline reply client_certificate_required() { return {554, {5, 7, 0}, "Client certificate required"}; }
inline reply tls_already_active() { return {503, {5, 5, 1}, "TLS already active"}; }
inline reply tls_not_available() { return {454, {4, 7, 0}, "TLS not available due to temporary reason"}; }

// --- policy and resources ------------------------------------------------------------
/// DESIGN §5: recipient outside accepted_domains without accept_any_recipient.
inline reply relay_denied() { return {550, {5, 7, 1}, "Relay access denied"}; }
/// DESIGN §5: a recipient in an accepted domain that no send connector covers. A mistake
/// in this server's configuration, so the sender keeps the mail and retries while it is
/// fixed, instead of a 250 followed by a bounce.
inline reply no_route() { return {451, {4, 4, 4}, "No route to this domain here yet, try again later"}; }
/// DESIGN §5: a recipient an authoritative accepted domain does not list: refused at RCPT,
/// so no bounce (backscatter to a forged sender) ever follows.
inline reply unknown_user() { return {550, {5, 1, 1}, "No such user here"}; }
/// DESIGN §5: the recipient directory cannot say whether the user exists; never a 550.
inline reply directory_unavailable() { return {451, {4, 4, 3}, "Recipient directory unavailable, try again later"}; }
/// DESIGN §5: a local part that routes elsewhere (%, !, a second @) from a client
/// without relay permission (allow_untrusted_routing = false).
inline reply routing_denied() { return {550, {5, 7, 1}, "Relay access denied: sender-specified routing is not allowed"}; }
/// DESIGN §5: SIZE= at MAIL or the body at end of DATA over max_message_size.
inline reply message_too_big() { return {552, {5, 3, 4}, "Message size exceeds fixed maximum message size"}; }
inline reply header_too_big() { return {552, {5, 3, 4}, "Message header size exceeds limit"}; }
/// DESIGN §5: more recipients than max_recipients (RFC 5321 §4.5.3.1.10: 452, not 552).
inline reply too_many_recipients() { return {452, {4, 5, 3}, "Too many recipients"}; }
/// DESIGN §5: bare CR or LF, NUL, or a line over 1000 octets inside DATA.
inline reply bad_message_content() { return {550, {5, 6, 0}, "Message content rejected: bare CR or LF, NUL or overlong line"}; }
/// DESIGN §5: more Received: headers than max_hop_count (RFC 5321 §6.3).
inline reply too_many_hops() { return {554, {5, 4, 6}, "Too many hops, mail loop detected"}; }
/// DESIGN §5: the queue store could not make the message durable, or disk below min_free.
inline reply queue_unavailable() { return {452, {4, 3, 1}, "Insufficient system storage"}; }
/// DESIGN §5: the queue store failed (I/O error, corruption) and is recovering.
inline reply queue_failed() { return {451, {4, 3, 0}, "Queue store unavailable, try again later"}; }

}  // namespace postern::smtp::replies
