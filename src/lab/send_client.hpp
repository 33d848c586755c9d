// lab/send_client.hpp: the SMTP client behind `postern send` (DESIGN.md §4), also used by
// `postern demo` for its first hop.
//
// It is the delivery side's own client (delivery::client_session and its TLS policy), run
// once for one test message: connect, EHLO, STARTTLS (or implicit TLS), the verdict of
// delivery/tls_policy against the name asked for, then MAIL/RCPT/DATA only when the
// verdict passes. Nothing is queued: the outcome is reported and forgotten.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "smtp/client_fsm.hpp"
#include "delivery/tls_policy.hpp"

namespace postern::lab {

/// A key ring certificate to present as a TLS client (mutual TLS, `--client-certificate`).
struct client_certificate_choice {
    std::string label;                     // "" = present none
    std::filesystem::path keyring, stash;  // from -c FILE's [tls], or --keyring and --stash
};

struct send_request {
    enum class tls_use { none, starttls, implicit };

    std::string host = "localhost";
    std::uint16_t port = 25;
    tls_use tls = tls_use::none;
    std::string ca_file;        // trusted roots (PEM); "" = the system CA store
    std::string tls_domain;     // name the certificate must carry; "" = host
    delivery::auth_level level = delivery::auth_level::domain_validation;
    std::string helo;           // "" = the system's host name
    std::string from;
    std::string to;
    std::string subject = "Postern test message";
    std::string body;           // "" = a line saying what this is
    unsigned timeout_seconds = 30;
    client_certificate_choice client_certificate;
};

struct send_report {
    bool connected = false;
    bool tls = false;                    // a handshake completed and its verdict passed
    bool delivered = false;              // 250 after the final dot
    std::string remote;                  // "IP:port"
    std::string name_checked;            // "mx.example.test" or "IP:127.0.0.1"
    std::vector<std::string> trust_anchors;   // subjects of --ca, or "system CA store"
    delivery::tls_verdict verdict;       // as the delivery side logs it
    delivery::auth_level achieved = delivery::auth_level::none;   // the IP check folded in
    std::string client_certificate;      // "LABEL (subject)" when one was offered
    std::string message_id;
    std::string final_reply;             // the reply to the final dot, or to the refused command
    std::string failure;                 // why not delivered ("" when delivered)
    std::vector<smtp::transcript_line> transcript;
};

/// The test message: From, To, Date, Message-ID, Subject, a short body. CRLF lines.
std::string build_test_message(const send_request& req, const std::string& message_id);

/// Runs one send. `on_line` sees every transcript line as it happens (may be empty).
/// Throws std::runtime_error only for bad input (an unreadable --ca file, an unresolvable
/// host); everything the server does is in the report.
send_report run_send(const send_request& req,
                     const std::function<void(const smtp::transcript_line&)>& on_line = {});

/// "HOST[:PORT]" or "[v6]:PORT"; the port defaults to `default_port`. Throws
/// std::invalid_argument on a bad port.
std::pair<std::string, std::uint16_t> split_host_port(const std::string& text, std::uint16_t default_port);

/// "none", "encryption_only", ... -> level; throws std::invalid_argument otherwise.
delivery::auth_level parse_auth_level(const std::string& text);

/// True when `host` is an IPv4 or IPv6 literal.
bool is_ip_literal(const std::string& host);

/// This machine's host name ("localhost" when it has none): the default EHLO name.
std::string local_host_name();

/// The TLS client context a send connector named `connector_name` would have (TLS 1.2+,
/// AEAD, its verify callback), trusting the roots in `ca_file` (PEM) or, when that is
/// empty, the system store. The subjects trusted are appended to `anchors` for the report.
/// With a `client_certificate` label, that key ring certificate (with its chain and key)
/// is presented, as a send connector's client_certificate is, and `presented` says which.
/// Throws on an unreadable --ca file, a key ring that does not open or a label that is
/// not a certificate with its key.
std::shared_ptr<SSL_CTX> lab_client_context(const std::string& connector_name, bool require_tls,
                                            const std::string& ca_file, std::vector<std::string>& anchors,
                                            const client_certificate_choice& client_certificate = {},
                                            std::string* presented = nullptr);

/// Where `--client-certificate` finds the key ring: [tls] keyring and stash of
/// `config_file`, or the paths given. Throws std::invalid_argument when neither is given
/// and std::runtime_error when the configuration does not load.
client_certificate_choice client_certificate_from(const std::string& label, const std::string& config_file,
                                                  const std::string& keyring, const std::string& stash);

/// After an implicit-TLS handshake failed: connects again in plaintext and returns the
/// server's first line when it greets as SMTP ("220 ..."), i.e. the port wants STARTTLS.
/// "" when it does not (or says nothing within `wait`).
std::string plaintext_greeting(const std::string& host, std::uint16_t port, std::chrono::seconds wait);

}  // namespace postern::lab
