// tls/openssl_ptr.hpp: owning handles for OpenSSL objects and the error-queue reader.
//
// Every OpenSSL object in tls/ lives in one of these, so an early throw never leaks a key.
#pragma once

#include <memory>
#include <string>

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pkcs12.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

namespace postern::tls {

template <auto free_fn>
struct openssl_deleter {
    template <class T>
    void operator()(T* p) const noexcept { free_fn(p); }
};

using bio_ptr = std::unique_ptr<BIO, openssl_deleter<BIO_free_all>>;
using x509_ptr = std::unique_ptr<X509, openssl_deleter<X509_free>>;
using x509_req_ptr = std::unique_ptr<X509_REQ, openssl_deleter<X509_REQ_free>>;
using x509_name_ptr = std::unique_ptr<X509_NAME, openssl_deleter<X509_NAME_free>>;
using x509_store_ptr = std::unique_ptr<X509_STORE, openssl_deleter<X509_STORE_free>>;
using x509_store_ctx_ptr = std::unique_ptr<X509_STORE_CTX, openssl_deleter<X509_STORE_CTX_free>>;
using x509_extension_ptr = std::unique_ptr<X509_EXTENSION, openssl_deleter<X509_EXTENSION_free>>;
using evp_pkey_ptr = std::unique_ptr<EVP_PKEY, openssl_deleter<EVP_PKEY_free>>;
using pkcs12_ptr = std::unique_ptr<PKCS12, openssl_deleter<PKCS12_free>>;
using pkcs8_ptr = std::unique_ptr<PKCS8_PRIV_KEY_INFO, openssl_deleter<PKCS8_PRIV_KEY_INFO_free>>;
using ssl_ctx_ptr = std::unique_ptr<SSL_CTX, openssl_deleter<SSL_CTX_free>>;
using ssl_ptr = std::unique_ptr<SSL, openssl_deleter<SSL_free>>;
using asn1_integer_ptr = std::unique_ptr<ASN1_INTEGER, openssl_deleter<ASN1_INTEGER_free>>;
using bignum_ptr = std::unique_ptr<BIGNUM, openssl_deleter<BN_free>>;

inline x509_ptr up_ref(X509* cert) {
    X509_up_ref(cert);
    return x509_ptr(cert);
}
inline evp_pkey_ptr up_ref(EVP_PKEY* key) {
    EVP_PKEY_up_ref(key);
    return evp_pkey_ptr(key);
}

/// Drains OpenSSL's thread-local error queue into one line ("" when it is empty), so the
/// next failure does not report a stale cause.
std::string openssl_errors();

/// Loads the "default" and "legacy" providers once per process. The legacy provider is what
/// lets RC2/3DES-protected .pfx files made by Windows open (DESIGN.md §4).
void load_providers();

}  // namespace postern::tls
