// tls/keyring/keyring_operations.hpp: what `postern keyring` does, without the command line.
//
// Each operation changes a key ring and its request log in memory; the caller writes both
// back (keyring::write, request_log::save) only when the operation succeeded, so a refused
// change leaves the files untouched.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "tls/keyring/keyring.hpp"
#include "tls/keyring/request_log.hpp"

namespace postern::tls {

/// A refusal of `install` or `trust`: what() is the one-line reason for the administrator.
struct keyring_refusal : tls_error {
    using tls_error::tls_error;
};

struct request_options {
    std::string subject;                 // "CN=mx1.example.test,O=Example"
    std::vector<std::string> names;      // "DNS:…", "IP:…"; empty = DNS:<CN>
    std::string key_type{"ecdsa-p256"};
    std::string label;                   // "" = the subject's CN
};

struct request_result {
    std::string label;
    std::string csr_pem;
};

/// New key + CSR: the key goes into the ring as a pending request, the request into the log.
request_result add_request(keyring& ring, request_log& log, const request_options& options);

/// `keyring renew LABEL`: a new key (of `key_type`, "" = the current key's type) and a CSR
/// for the same subject and names as LABEL's certificate, kept as a pending request
/// ("LABEL-renewal") that renews LABEL. LABEL keeps serving; install_certificate of the
/// signed certificate replaces LABEL's certificate and key in place. Refused
/// (keyring_refusal) for anything but a certificate with its key, and while a renewal of
/// LABEL is already pending.
request_result renew_request(keyring& ring, request_log& log, const std::string& label, const std::string& key_type);

/// `keyring import`: a certificate with its key from elsewhere (PKCS#12, PEM). The
/// certificate is the one of `certificates` that matches `key`; it must be valid now, chain
/// to a root the ring already trusts (intermediates may come along, roots are never taken
/// from the file) and have EKU serverAuth. It becomes a server entry under `label` (""
/// = its CN); intermediates it uses join the ring. Returns the label. Throws
/// keyring_refusal.
std::string import_certificate(keyring& ring, std::vector<x509_ptr> certificates, evp_pkey_ptr key,
                               const std::string& label, const std::string& source);

/// What a file to import holds: a key and certificates (the matching leaf among them).
struct import_material {
    evp_pkey_ptr key;
    std::vector<x509_ptr> certificates;
    std::string friendly_name;           // PKCS#12 friendlyName of the leaf, if any
};

/// Reads `file`: PKCS#12 (.pfx/.p12, legacy algorithms included) protected by `password`,
/// or PEM certificates with the key in the same file or in `key_file` (encrypted PEM keys
/// take `password`). Throws tls_error naming the file.
import_material read_import_file(const std::filesystem::path& file, const std::filesystem::path& key_file,
                                 std::string_view password);

/// Adds CA certificates (roots and intermediates) to the ring. A non-CA certificate is
/// refused unless `pinned_peer` (then it is trusted as itself). Certificates already in
/// the ring are skipped. Returns "LABEL (role)" for each added one.
std::vector<std::string> trust_certificates(keyring& ring, std::vector<x509_ptr> certificates, bool pinned_peer,
                                            const std::string& label, const std::string& source);

/// Installs a signed certificate onto its pending request, matched by public key (for a
/// renewal, onto the label it renews: see renew_request). Refuses
/// (keyring_refusal) when no request matches, when it is expired or not yet valid, when its
/// chain does not reach a trusted root of the ring, or when it lacks EKU serverAuth.
/// Intermediates given along with it, and used by the chain, join the ring. Returns the label.
std::string install_certificate(keyring& ring, request_log& log, std::vector<x509_ptr> certificates,
                                const std::string& source);

void rename_entry(keyring& ring, request_log& log, const std::string& from, const std::string& to);
void set_default(keyring& ring, request_log& log, const std::string& label);
/// Removes an entry; a pending request is marked cancelled in the log.
void remove_entry(keyring& ring, request_log& log, const std::string& label);

/// Certificate, then its chain up to and including the ring's root, then (with_key) the
/// unencrypted PKCS#8 key.
std::string export_pem(const keyring& ring, const std::string& label, bool with_key);
/// The same content as a PKCS#12 file in our layout.
std::string export_pkcs12(const keyring& ring, const std::string& label, bool with_key,
                          std::string_view password, pkcs12_protection protection);

/// Everything `list` and `show` print about one entry, as JSON:
/// label, role, default, subject, names, issuer, not_before, not_after, days_left,
/// key_type, sha256, sha1, public_key_sha256 (and for a pending request: requested).
nlohmann::json describe(const keyring& ring, const request_log& log, const keyring_entry& entry);

}  // namespace postern::tls
