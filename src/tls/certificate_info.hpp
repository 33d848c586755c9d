// tls/certificate_info.hpp: what a person or a log line needs to know about a certificate.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "tls/openssl_ptr.hpp"

namespace postern::tls {

std::string name_text(const X509_NAME* name);          // RFC 2253: "CN=mx1,O=Example"
std::string common_name(const X509_NAME* name);        // "" when there is none
std::string subject_text(const X509* cert);
std::string issuer_text(const X509* cert);

/// subjectAltName entries as "DNS:name" / "IP:address" (other kinds are skipped).
std::vector<std::string> subject_alt_names(const X509* cert);
/// Only the DNS entries, without the "DNS:" prefix.
std::vector<std::string> dns_names(const X509* cert);

std::string hex(const unsigned char* data, std::size_t size);   // lower case, no colons
std::string sha256_fingerprint(const X509* cert);                // over the DER certificate
std::string sha1_fingerprint(const X509* cert);                  // Windows "thumbprint"
std::string public_key_sha256(const EVP_PKEY* key);              // over the DER SubjectPublicKeyInfo

/// "rsa-2048", "ecdsa-p256", "ecdsa-p384", "ed25519", or the algorithm name.
std::string key_type(const EVP_PKEY* key);

std::string time_text(const ASN1_TIME* time);          // ISO 8601 UTC: "2025-01-31T12:00:00Z"
int days_until(const ASN1_TIME* time);                 // negative once it has passed
int days_left(const X509* cert);                       // until notAfter

bool is_ca(const X509* cert);                          // basicConstraints cA = true
bool is_self_signed(const X509* cert);                 // self-issued and the signature verifies
bool has_server_auth(const X509* cert);                // extendedKeyUsage contains serverAuth

/// Every certificate in PEM text, in order. Throws tls_error naming `source` when there is
/// none or a block is damaged.
std::vector<x509_ptr> certificates_from_pem(std::string_view pem, const std::string& source);
std::string to_pem(const X509* cert);
std::string to_pem(const X509_REQ* request);
/// Unencrypted PKCS#8 PEM: the caller writes it to a 0600 file only.
std::string private_key_to_pem(const EVP_PKEY* key);

}  // namespace postern::tls
