// tls/lab_ca/lab_ca.hpp: the small CA behind `postern ca` (DESIGN.md §4), for labs and tests.
//
// DIR/ca.pem is the root certificate (critical CA:TRUE, keyCertSign + cRLSign, SKI), DIR/ca.key
// its unencrypted key (0600; a lab CA trades protection for convenience on purpose). Leaves
// carry the CSR's subject and SANs, EKU serverAuth + clientAuth, SKI/AKI and a random serial.
#pragma once

#include <filesystem>
#include <string>

#include "tls/openssl_ptr.hpp"

namespace postern::tls {

inline constexpr const char* default_lab_ca_subject = "CN=Postern Lab Root CA";

class lab_ca {
public:
    /// Creates DIR (0700 when new), a P-256 root key and a self-signed root valid `days`.
    /// Refuses (tls_error) when DIR/ca.pem or DIR/ca.key already exists.
    static lab_ca init(const std::filesystem::path& dir, const std::string& subject, int days = 3650);
    /// Opens an existing lab CA; the key file must not be readable by group or others.
    static lab_ca open(const std::filesystem::path& dir);

    /// A leaf certificate for the (already verified) request, valid `days` from now.
    /// Refuses a request without subjectAltName or with a CA-looking request for a CA.
    x509_ptr sign(const X509_REQ* request, int days) const;

    const X509* certificate() const { return cert_.get(); }

private:
    x509_ptr cert_;
    evp_pkey_ptr key_;
};

}  // namespace postern::tls
