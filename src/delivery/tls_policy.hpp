// delivery/tls_policy.hpp: the outbound TLS policy of DESIGN.md §3 (STYLE E10).
//
// Standards: RFC 3207 (STARTTLS), RFC 6125 (names in certificates; no partial wildcards,
// no CN fallback when a DNS SAN exists), RFC 7672 §2.2 and RFC 8461 (why an MX host name
// counts only when the MX answer was DNSSEC-secure: otherwise an attacker who forges the
// MX answer also chooses the name the certificate is checked against).
//
// Levels are ordered, so "is this good enough" is `achieved >= required`. Every attempt
// yields one verdict, written as a '*' line to the send protocol log (DESIGN §6),
// whether TLS was used or not.
//
// What happens on failure:
//  - require_tls: never plaintext. No STARTTLS, a 454, a failed handshake or a verdict
//    below the required level makes the attempt transient with that reason; the message
//    stays queued and bounces at [queue] expire with the reason in the DSN.
//  - opportunistic (require_tls = false): after a 454 or a failed handshake, the next
//    attempt to that host may go in plaintext, logged "TLS failed (<reason>); sent in
//    plaintext".
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <openssl/ssl.h>

#include "config/schema.hpp"
#include "delivery/protocol_terms.hpp"
#include "policy/dane.hpp"
#include "route/resolver.hpp"

namespace postern::delivery {

struct client_tls_material;

enum class auth_level : std::uint8_t { none, encryption_only, certificate_validation, domain_validation };

auth_level to_auth_level(config::tls_auth_level level);
const char* to_string(auth_level level);

/// What a send connector asks of one connection's peer.
struct peer_expectation {
    auth_level required = auth_level::encryption_only;   // none when TLS is not even tried
    bool require_tls = false;
    std::vector<std::string> names;      // domain_validation: acceptable names (".d" = below d)
    std::string sni;                     // server name indication
    /// DANE (RFC 7672): the usable TLSA records that must authenticate the peer, instead
    /// of PKIX; the TLSA base domain (the MX host) and every reference identifier for
    /// DANE-TA (the MX host and the recipient domain). Empty records: no DANE.
    std::vector<route::tlsa_record> dane_records;
    std::string dane_base;
    std::vector<std::string> dane_names;
    /// An enforced MTA-STS policy lists this MX: a pass is the word "mta-sts".
    bool mta_sts = false;
    /// An MTA-STS testing policy: `names` are checked as enforce would check them, the
    /// outcome only noted (tls_verdict::testing_failure) and reported (RFC 8461 §5).
    bool sts_testing = false;
    /// What published policy demands beyond the connector ("DANE: 2 usable TLSA
    /// record(s)"), for the verdict line; empty when only the connector's rules apply.
    std::string policy;
};

/// The names a certificate may carry under domain_validation (DESIGN §3): tls_domain
/// when set; else the recipient domain or any name below it; the MX host name too, but
/// only when the MX answer was DNSSEC-secure.
peer_expectation expectation_for(const config::send_connector& connector, const std::string& recipient_domain,
                                 const std::string& mx_host, bool mx_dnssec_secure);

struct attempt_plan;

/// Raises `want` and `plan` to what DANE demands of one MX host (DESIGN §3 `dane`):
/// authenticate, or TLS without authentication; TLS either way, never plaintext.
/// Published policy only raises: a requirement of kind not_applicable changes nothing.
void apply_dane(const policy::dane_requirement& dane, const std::string& mx_host,
                const std::string& recipient_domain, peer_expectation& want, attempt_plan& plan);

/// How one attempt uses TLS.
struct attempt_plan {
    client_settings::starttls_use starttls = client_settings::starttls_use::if_offered;
    bool implicit_tls = false;
    bool plaintext_after_tls_failure = false;   // opportunistic fallback in effect
    std::string previous_tls_failure;           // its reason, for the log line
};

/// `tls_failure` is the reason the last TLS attempt to this host failed (454 or a failed
/// handshake), when that is still remembered.
attempt_plan plan_attempt(const config::send_connector& connector, bool smart_host,
                          const std::optional<std::string>& tls_failure);

/// One '*' protocol-log line: what the TLS layer proved, against what was required.
struct tls_verdict {
    bool tls = false;                    // a handshake completed
    std::string protocol, cipher, subject, issuer, sha256;
    auth_level achieved = auth_level::none;
    auth_level required = auth_level::none;
    std::string failure;                 // why achieved < required (or why TLS failed)
    /// DESIGN §6 verdict word: dane-ee, dane-ta, mta-sts, pkix, opportunistic, cleartext,
    /// or for a failure its RFC 8460 result type (certificate-host-mismatch, ...).
    std::string result;
    std::string policy;                  // peer_expectation::policy: what published policy demanded
    /// Under an MTA-STS testing policy, the RFC 8460 result type an enforce policy would
    /// have failed this session with ("" when it would have passed).
    std::string testing_failure;
    bool ok() const { return achieved >= required; }
    std::string log_line() const;
};

/// What the verify callback saw during one handshake. Chain errors and the name check are
/// kept apart so a wrong name on a trusted certificate still proves certificate_validation.
struct verify_record {
    long first_chain_error = X509_V_OK;
    int chain_error_depth = 0;
    bool name_mismatch = false;
};

/// Client SSL_CTX for a send connector: TLS 1.2+ ([tls] min_version), [tls] ciphers and
/// ciphersuites (AEAD only; config/ refuses anything else), trust = key ring roots, plus
/// the system store when trust_system_store; the client_certificate identity when set.
/// The handshake never fails on verification: the verdict decides after it (so the log
/// can say exactly why). Throws tls::tls_error.
std::shared_ptr<SSL_CTX> make_client_context(const config::configuration& cfg,
                                             const config::send_connector& connector,
                                             const client_tls_material* material);

/// Prepares one SSL for a connection: SNI, and for domain_validation the names
/// (X509_VERIFY_PARAM_set1_host / add1_host with NO_PARTIAL_WILDCARDS). `record` must
/// outlive the handshake.
bool prepare_connection(SSL* ssl, const peer_expectation& want, verify_record* record, std::string* error);

/// The verdict of a completed handshake.
tls_verdict evaluate(const SSL* ssl, const peer_expectation& want, const verify_record& record);
/// The verdict of an attempt that did not get TLS (not offered, 454, handshake failure,
/// or TLS not tried at all). `result`: the RFC 8460 result type when the caller knows it
/// (a failed handshake: validation-failure, pass or fail); else cleartext when nothing
/// was required, starttls-not-supported when TLS was.
tls_verdict no_tls_verdict(const peer_expectation& want, std::string failure, std::string result = {});

/// Hosts whose last TLS attempt failed (opportunistic fallback memory, chasquid style).
/// Thread-safe.
class tls_failure_memory {
public:
    explicit tls_failure_memory(std::chrono::seconds keep) : keep_(keep) {}
    void remember(const std::string& host, std::string reason, std::chrono::steady_clock::time_point now);
    void forget(const std::string& host);
    std::optional<std::string> recall(const std::string& host, std::chrono::steady_clock::time_point now) const;

private:
    struct entry { std::string reason; std::chrono::steady_clock::time_point until; };
    std::chrono::seconds keep_;
    mutable std::mutex mutex_;
    std::map<std::string, entry> hosts_;
};

}  // namespace postern::delivery
