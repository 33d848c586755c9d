// tls/keyring/keyring.hpp: the key ring, a PKCS#12 file (DESIGN.md §4).
//
// Layout, readable by `openssl pkcs12` and Windows:
// - friendlyName = label;
// - localKeyID links a key to its certificate (we write the SHA-1 of the public key);
// - a key without a certificate is a pending request;
// - certificates without a key are classified by content: a self-signed CA certificate is
//   a trusted root, any other CA certificate an intermediate (never a root), and a non-CA
//   certificate a pinned peer (`trust --pinned-peer`), trusted as itself.
// Everything else (the default label, the request history) lives in the request log,
// <keyring>.requests.json, so that the PKCS#12 file carries only standard attributes.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tls/error.hpp"
#include "tls/openssl_ptr.hpp"

namespace postern::tls {

enum class entry_role { server, pending, root, intermediate, peer };

std::string_view to_string(entry_role role);

struct keyring_entry {
    std::string label;
    entry_role role = entry_role::root;
    x509_ptr certificate;   // empty for pending
    evp_pkey_ptr key;       // server and pending only
};

/// How a PKCS#12 file is protected.
enum class pkcs12_protection {
    modern,   // PBES2: PBKDF2-HMAC-SHA256 + AES-256-CBC, MAC SHA-256 (our default)
    legacy,   // PBE-SHA1-3DES for keys and certificates, MAC SHA-1 (old Windows)
};

class keyring {
public:
    /// Reads a PKCS#12 file made by us, by `openssl pkcs12 -export` or by Windows
    /// (legacy RC2/3DES included). Throws tls_error naming the file and the cause.
    static keyring read(const std::filesystem::path& file, std::string_view password);
    /// Same, from bytes already in memory; `source` names them in errors.
    static keyring parse(std::string_view der, std::string_view password, const std::string& source);

    /// Writes the whole key ring atomically (0600). Throws tls_error.
    void write(const std::filesystem::path& file, std::string_view password,
               pkcs12_protection protection = pkcs12_protection::modern) const;
    std::string serialize(std::string_view password,
                          pkcs12_protection protection = pkcs12_protection::modern) const;

    std::vector<keyring_entry>& entries() { return entries_; }
    const std::vector<keyring_entry>& entries() const { return entries_; }

    keyring_entry* find(std::string_view label);
    const keyring_entry* find(std::string_view label) const;
    std::vector<const keyring_entry*> with_role(entry_role role) const;

    /// `base` when no entry has it, else "base-2", "base-3", …
    std::string unique_label(std::string base) const;

    /// Adds a certificate without a key; its role follows from its content. Returns it.
    keyring_entry& add_certificate(std::string label, x509_ptr cert);
    /// Adds a key without a certificate (a pending request).
    keyring_entry& add_pending_key(std::string label, evp_pkey_ptr key);

    /// The certificates between `leaf` and a root of the ring (intermediates only, nearest
    /// first; the root itself is not included).
    std::vector<const X509*> chain_for(const X509* leaf) const;
    /// The root that `leaf`'s chain ends at, or nullptr.
    const keyring_entry* root_for(const X509* leaf) const;

private:
    std::vector<keyring_entry> entries_;
};

/// The role a certificate without a key has in the ring.
entry_role classify_certificate(const X509* cert);

/// Picks the server certificate: `label` when given (it must be a server entry), else
/// `default_label` when it names a server entry, else the only server entry. Throws
/// tls_error, naming `file`, when none or several fit.
const keyring_entry& select_server_entry(const keyring& ring, std::string_view label,
                                         std::string_view default_label,
                                         const std::filesystem::path& file);

}  // namespace postern::tls
