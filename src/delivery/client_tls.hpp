// delivery/client_tls.hpp: the key material the send side takes from the key ring.
//
// Read once at start and again on reload. Only tls/keyring reads the PKCS#12 file and the
// stash; the send side keeps the certificates it needs, never the password.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "config/schema.hpp"
#include "tls/openssl_ptr.hpp"

namespace postern::delivery {

/// Trusted roots for verifying next hops, and the certificates with keys that a send
/// connector may present (`client_certificate`, mutual TLS).
struct client_tls_material {
    struct identity {
        std::string label;
        tls::x509_ptr certificate;
        std::vector<tls::x509_ptr> chain;       // intermediates, nearest first
        tls::evp_pkey_ptr key;
    };
    /// A key ring root or pinned peer under its label, for a send connector's trusted_roots.
    struct anchor {
        std::string label;
        tls::x509_ptr certificate;
        bool pinned = false;                    // `trust --pinned-peer`: trusted as itself
    };
    std::vector<tls::x509_ptr> roots;          // what a connector without trusted_roots trusts
    std::vector<anchor> anchors;               // every root and pinned peer, by label
    std::vector<identity> identities;

    /// Reads [tls] keyring + stash. A missing key ring file gives empty material (then only
    /// trust_system_store connectors can verify anything). Throws tls::tls_error on a
    /// damaged key ring or a wrong password.
    static std::shared_ptr<const client_tls_material> load(const config::configuration& cfg);
    const identity* find(const std::string& label) const;
    const anchor* find_anchor(const std::string& label) const;

    /// Throws tls::tls_error naming the connector when a send connector's trusted_roots
    /// names no root or pinned peer of the key ring (checked at start and at reload).
    void check_trusted_roots(const config::configuration& cfg) const;
};

}  // namespace postern::delivery
