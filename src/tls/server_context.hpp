// tls/server_context.hpp: the TLS material a receive connector serves with.
//
// Built from [tls] and the key ring (PKCS#12 + stash, DESIGN.md §4). The SSL_CTX enforces
// TLS 1.2+ (or 1.3 with min_version = "1.3"), AEAD ciphers only, server cipher
// preference, session tickets and a server-side session cache of session_cache_size.
// It requests (never requires) a client certificate, verifying it against the key
// ring's trusted roots only, so a failed or absent certificate still completes the
// handshake and the session can answer 554 5.7.0 (DESIGN.md §5).
//
// net/ owns no key material: it wraps native() in an asio::ssl::context handle.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <openssl/ssl.h>

#include "config/schema.hpp"
#include "tls/error.hpp"   // tls_error

namespace postern::tls {

class server_context {
public:
    /// Loads the key ring named by cfg.tls (paths already resolved by config/), picks the
    /// server certificate (label cfg.tls.certificate, or the only one), and builds the
    /// SSL_CTX. Throws tls_error.
    static std::shared_ptr<server_context> build(const config::configuration& cfg);

    ~server_context();
    server_context(const server_context&) = delete;
    server_context& operator=(const server_context&) = delete;

    SSL_CTX* native() const { return ctx_; }   // SSL_CTX_up_ref before handing ownership away

    /// A receive connector with its own trusted_roots verifies client certificates against
    /// those alone (and, only when it names a pinned peer, accepts a chain that ends at it);
    /// the context's own store (every root of the key ring) serves the others. Call on
    /// each new SSL of that connector before the handshake.
    void apply_trust(SSL* ssl, const std::string& connector) const;

    /// Days until the server certificate expires (negative when expired).
    int days_left() const { return days_left_; }
    const std::string& certificate_subject() const { return subject_; }
    const std::string& certificate_label() const { return label_; }

private:
    struct connector_trust {
        X509_STORE* store = nullptr;
        STACK_OF(X509_NAME)* ca_names = nullptr;
        bool partial_chain = false;              // it names a pinned peer
    };
    server_context() = default;
    SSL_CTX* ctx_ = nullptr;
    std::map<std::string, connector_trust> trust_;
    int days_left_ = 0;
    std::string subject_;
    std::string label_;
};

/// What the handshake proved, read off a completed SSL* (both directions).
struct peer_certificate {
    bool presented = false;
    bool verified = false;               // chain to a trusted root of the key ring, in validity
    std::string verify_error;            // X509_verify_cert_error_string when not verified
    std::string subject;                 // RFC 2253
    std::string issuer;
    std::string sha256;                  // lower-case hex, no colons
    std::vector<std::string> dns_names;  // subjectAltName DNS entries
};

struct session_info {
    std::string protocol;                // "TLSv1.3"
    std::string cipher;                  // "TLS_AES_256_GCM_SHA384"
    int cipher_bits = 0;
    bool resumed = false;
    peer_certificate peer;
};

session_info inspect(const SSL* ssl);

/// The partner rule of DESIGN.md §3: a verified certificate whose name matches one of
/// `names` (RFC 6125, X509_check_host with NO_PARTIAL_WILDCARDS, no CN fallback when a
/// DNS SAN exists; "*.partner.test" means any host below partner.test) or whose SHA-256
/// fingerprint is one of `fingerprints` ("sha256:" prefix and colons allowed).
/// `why` receives the reason when it is not a partner.
bool is_partner(const SSL* ssl, const std::vector<std::string>& names,
                const std::vector<std::string>& fingerprints, std::string* why = nullptr);

}  // namespace postern::tls
