// log/app_log.hpp: the server log (spdlog to stderr) and the masking of secrets.
//
// The server log is for operators: start-up, listeners, reloads, TLS handshake failures
// ([debug] report_tls_handshake_errors), and the [debug] traces. Anything that may carry
// a client's secret goes through redact_smtp_line() first (DESIGN.md §3 smtp_io_trace,
// §6 "AUTH data as <secret>").
#pragma once

#include <string>
#include <string_view>

#include <spdlog/spdlog.h>

namespace postern::log {

/// What a secret is replaced with, in the protocol log and the server log alike.
inline constexpr std::string_view secret_placeholder = "<secret>";

/// Sets up the default spdlog logger: stderr, "2026-03-01T14:05:09.123Z level message".
/// `level` is an spdlog level name ("info", "debug", ...); unknown names mean "info".
void init_app_log(std::string_view level = "info");

/// Text from a peer, safe for one server-log line: control bytes, the backslash and the
/// Unicode characters that reorder or break a line on screen (bidi controls, U+2028,
/// U+2029) become \xNN, as in the protocol log (DESIGN §6).
std::string printable(std::string_view text);

/// One SMTP command line, safe to log: the initial response of "AUTH <mechanism> <data>"
/// becomes "AUTH <mechanism> <secret>". Other lines are returned unchanged.
std::string redact_smtp_line(std::string_view line);

/// Tracks an SMTP dialogue in one direction and masks the lines that carry AUTH secrets:
/// the initial response, and every client line between a 334 challenge and the final
/// reply. Feed it every line of the session, client and server, in order.
class auth_redactor {
public:
    /// A line the client sent; returns it as it may be logged.
    std::string client_line(std::string_view line);
    /// A reply the server sent (needed to know when the exchange ends).
    void server_line(std::string_view line);

private:
    bool in_auth_ = false;
};

/// [debug] smtp_io_trace for one session: the bytes each way, one server-log line per
/// SMTP line ("smtp-io LABEL < line" received, "> line" sent), AUTH secrets masked, control
/// bytes escaped. Only whole lines are logged, so an AUTH line split across reads is still
/// recognised; a line longer than 4096 octets is logged cut.
class io_tracer {
public:
    /// `we_are_server`: the lines we receive are the client's (those are masked).
    io_tracer(std::string label, bool we_are_server) : label_(std::move(label)), server_(we_are_server) {}
    void received(std::string_view bytes) { feed(bytes, true); }
    void sent(std::string_view bytes) { feed(bytes, false); }

private:
    void feed(std::string_view bytes, bool incoming);
    void emit(std::string_view line, bool incoming, bool cut);
    std::string label_;
    bool server_;
    auth_redactor redactor_;
    std::string partial_in_, partial_out_;
};

}  // namespace postern::log
