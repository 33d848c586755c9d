// tls/keyring/certificate_request.hpp: keys, names and certificate signing requests (PKCS#10).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "tls/openssl_ptr.hpp"

namespace postern::tls {

/// The key types `keyring request --key` offers.
inline constexpr std::string_view key_types[] = {"rsa-2048", "rsa-3072", "rsa-4096", "ecdsa-p256", "ecdsa-p384"};
inline constexpr std::string_view default_key_type = "ecdsa-p256";

/// A new private key of `type` (one of key_types). Throws tls_error.
evp_pkey_ptr generate_key(std::string_view type);

/// "CN=mx1.example.test,O=Example" (RFC 4514: most specific first, "\," escapes a comma)
/// or OpenSSL's "/O=Example/CN=mx1.example.test". Throws tls_error naming the bad part.
x509_name_ptr parse_distinguished_name(std::string_view text);

/// "DNS:a.example,IP:192.0.2.1" -> {"DNS:a.example", "IP:192.0.2.1"}; only DNS and IP, each
/// checked (an IP must parse, a DNS name must be a plausible host name or wildcard).
/// Throws tls_error.
std::vector<std::string> parse_subject_alt_names(std::string_view text);

/// A SHA-256-signed PKCS#10 request for `key` with `subject` and a subjectAltName extension.
x509_req_ptr make_request(EVP_PKEY* key, const X509_NAME* subject, const std::vector<std::string>& names);

/// The subjectAltName entries a request asks for ("DNS:…", "IP:…").
std::vector<std::string> requested_names(const X509_REQ* request);

/// A CSR read from PEM (or DER) text; its self-signature is checked. Throws tls_error.
x509_req_ptr request_from_text(std::string_view text, const std::string& source);

/// A random positive 159-bit serial number (RFC 5280 §4.1.2.2: at most 20 octets).
asn1_integer_ptr random_serial();

/// Adds an extension written in openssl.cnf syntax ("critical,CA:TRUE"). Throws tls_error.
void add_extension(X509* cert, X509* issuer, int nid, const std::string& value);

}  // namespace postern::tls
