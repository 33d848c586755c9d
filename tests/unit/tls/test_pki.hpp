// tests/unit/tls/test_pki.hpp: certificates and key rings made in-process for the tests.
#pragma once

// The tests spell certificate options with designated initializers and leave the rest at
// their defaults on purpose; GCC 12 warns about every omitted member.
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/pkcs12.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tls/openssl_ptr.hpp"

namespace postern::tls::test {

inline evp_pkey_ptr make_ec_key() { return evp_pkey_ptr(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256")); }
inline evp_pkey_ptr make_rsa_key(size_t bits = 2048) {
    return evp_pkey_ptr(EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", bits));
}

inline void add_ext(X509* cert, X509* issuer, int nid, const char* value) {
    X509V3_CTX v3;
    X509V3_set_ctx_nodb(&v3);
    X509V3_set_ctx(&v3, issuer, cert, nullptr, nullptr, 0);
    X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &v3, nid, value);
    if (!ext) std::abort();
    X509_add_ext(cert, ext, -1);
    X509_EXTENSION_free(ext);
}

struct cert_options {
    std::string cn;
    std::vector<std::string> sans;   // "DNS:mx1.example.test"
    bool ca = false;
    std::string eku = "serverAuth,clientAuth";   // "" = no EKU extension
    long not_before_offset = -3600;              // seconds from now
    long not_after_offset = 86400L * 365;
};

/// Issues a certificate for `key`, signed by `issuer_key` (self-signed when issuer is null).
inline x509_ptr make_cert(const cert_options& o, EVP_PKEY* key, X509* issuer, EVP_PKEY* issuer_key) {
    x509_ptr cert(X509_new());
    X509_set_version(cert.get(), 2);
    unsigned char serial[16];
    RAND_bytes(serial, sizeof serial);
    serial[0] &= 0x7f;
    BIGNUM* bn = BN_bin2bn(serial, sizeof serial, nullptr);
    BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert.get()));
    BN_free(bn);
    X509_gmtime_adj(X509_getm_notBefore(cert.get()), o.not_before_offset);
    X509_gmtime_adj(X509_getm_notAfter(cert.get()), o.not_after_offset);
    X509_NAME* name = X509_get_subject_name(cert.get());
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, reinterpret_cast<const unsigned char*>(o.cn.c_str()), -1, -1, 0);
    X509_set_issuer_name(cert.get(), issuer ? X509_get_subject_name(issuer) : name);
    X509_set_pubkey(cert.get(), key);
    X509* issuer_cert = issuer ? issuer : cert.get();
    if (o.ca) {
        add_ext(cert.get(), issuer_cert, NID_basic_constraints, "critical,CA:TRUE");
        add_ext(cert.get(), issuer_cert, NID_key_usage, "critical,keyCertSign,cRLSign");
    } else {
        add_ext(cert.get(), issuer_cert, NID_basic_constraints, "critical,CA:FALSE");
        add_ext(cert.get(), issuer_cert, NID_key_usage, "critical,digitalSignature,keyEncipherment");
        if (!o.eku.empty()) add_ext(cert.get(), issuer_cert, NID_ext_key_usage, o.eku.c_str());
    }
    add_ext(cert.get(), issuer_cert, NID_subject_key_identifier, "hash");
    add_ext(cert.get(), issuer_cert, NID_authority_key_identifier, "keyid:always");
    if (!o.sans.empty()) {
        std::string joined;
        for (const auto& s : o.sans) joined += (joined.empty() ? "" : ",") + s;
        add_ext(cert.get(), issuer_cert, NID_subject_alt_name, joined.c_str());
    }
    if (!X509_sign(cert.get(), issuer_key ? issuer_key : key, EVP_sha256())) std::abort();
    return cert;
}

/// A CA with a server certificate, as most tests need.
struct lab_pki {
    evp_pkey_ptr ca_key = make_ec_key();
    x509_ptr ca = make_cert({.cn = "Test Root CA", .ca = true}, ca_key.get(), nullptr, nullptr);
    evp_pkey_ptr server_key = make_ec_key();
    x509_ptr server = make_cert({.cn = "mx1.example.test", .sans = {"DNS:mx1.example.test"}},
                                server_key.get(), ca.get(), ca_key.get());
    x509_ptr issue(const cert_options& o, EVP_PKEY* key) const { return make_cert(o, key, ca.get(), ca_key.get()); }
};

/// PKCS#12 bytes from PKCS12_create, the way a generic tool makes one.
inline std::string pkcs12_create(const char* password, const char* name, EVP_PKEY* key, X509* cert,
                                 std::vector<X509*> extra = {}) {
    STACK_OF(X509)* ca = sk_X509_new_null();
    for (X509* c : extra) sk_X509_push(ca, c);
    PKCS12* p12 = PKCS12_create_ex(password, name, key, cert, ca, NID_aes_256_cbc, NID_aes_256_cbc,
                                   PKCS12_DEFAULT_ITER, PKCS12_DEFAULT_ITER, 0, nullptr, nullptr);
    sk_X509_free(ca);
    if (!p12) std::abort();
    unsigned char* der = nullptr;
    int size = i2d_PKCS12(p12, &der);
    std::string bytes(reinterpret_cast<char*>(der), static_cast<size_t>(size));
    OPENSSL_free(der);
    PKCS12_free(p12);
    return bytes;
}

inline std::string pem_of(X509* cert) {
    bio_ptr out(BIO_new(BIO_s_mem()));
    PEM_write_bio_X509(out.get(), cert);
    char* data = nullptr;
    long n = BIO_get_mem_data(out.get(), &data);
    return std::string(data, static_cast<size_t>(n));
}

inline std::string pem_of(EVP_PKEY* key) {
    bio_ptr out(BIO_new(BIO_s_mem()));
    PEM_write_bio_PrivateKey(out.get(), key, nullptr, nullptr, 0, nullptr, nullptr);
    char* data = nullptr;
    long n = BIO_get_mem_data(out.get(), &data);
    return std::string(data, static_cast<size_t>(n));
}

inline void write_text(const std::filesystem::path& file, const std::string& text, mode_t mode = 0600) {
    std::ofstream(file, std::ios::binary) << text;
    ::chmod(file.c_str(), mode);
}

inline std::string read_text(const std::filesystem::path& file) {
    std::ifstream in(file, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
}

/// A fresh directory under the system temp dir, removed at the end of the test.
struct temp_dir {
    std::filesystem::path path;
    temp_dir() {
        std::string pattern = (std::filesystem::temp_directory_path() / "postern-tls-XXXXXX").string();
        path = ::mkdtemp(pattern.data());
    }
    ~temp_dir() {
        std::error_code ec;
        std::filesystem::remove_all(path, ec);
    }
    std::filesystem::path operator/(const std::string& name) const { return path / name; }
};

/// Runs a shell command; true when it exits 0.
inline bool run(const std::string& command) { return std::system((command + " >/dev/null 2>&1").c_str()) == 0; }

}  // namespace postern::tls::test
