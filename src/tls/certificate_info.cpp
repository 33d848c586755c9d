#include "tls/certificate_info.hpp"

#include <ctime>

#include <arpa/inet.h>

#include <openssl/asn1.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/pem.h>

#include "tls/error.hpp"

namespace postern::tls {

namespace {

std::string bio_text(BIO* bio) {
    char* data = nullptr;
    long size = BIO_get_mem_data(bio, &data);
    return std::string(data, static_cast<std::size_t>(size));
}

}  // namespace

std::string name_text(const X509_NAME* name) {
    if (!name) return {};
    bio_ptr out(BIO_new(BIO_s_mem()));
    X509_NAME_print_ex(out.get(), name, 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB);
    return bio_text(out.get());
}

std::string common_name(const X509_NAME* name) {
    if (!name) return {};
    int index = X509_NAME_get_index_by_NID(name, NID_commonName, -1);
    if (index < 0) return {};
    const ASN1_STRING* value = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, index));
    unsigned char* utf8 = nullptr;
    int size = ASN1_STRING_to_UTF8(&utf8, value);
    if (size < 0) return {};
    std::string text(reinterpret_cast<char*>(utf8), static_cast<std::size_t>(size));
    OPENSSL_free(utf8);
    return text;
}

std::string subject_text(const X509* cert) { return name_text(X509_get_subject_name(cert)); }
std::string issuer_text(const X509* cert) { return name_text(X509_get_issuer_name(cert)); }

std::vector<std::string> subject_alt_names(const X509* cert) {
    std::vector<std::string> names;
    auto* sans = static_cast<GENERAL_NAMES*>(
        X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
    if (!sans) return names;
    for (int i = 0; i < sk_GENERAL_NAME_num(sans); ++i) {
        const GENERAL_NAME* name = sk_GENERAL_NAME_value(sans, i);
        if (name->type == GEN_DNS) {
            const ASN1_STRING* s = name->d.dNSName;
            names.push_back("DNS:" + std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                                                 static_cast<std::size_t>(ASN1_STRING_length(s))));
        } else if (name->type == GEN_IPADD) {
            const ASN1_OCTET_STRING* ip = name->d.iPAddress;
            int length = ASN1_STRING_length(ip);
            char text[INET6_ADDRSTRLEN] = {};
            int family = length == 4 ? AF_INET : length == 16 ? AF_INET6 : -1;
            if (family != -1 && ::inet_ntop(family, ASN1_STRING_get0_data(ip), text, sizeof text))
                names.push_back(std::string("IP:") + text);
        }
    }
    GENERAL_NAMES_free(sans);
    return names;
}

std::vector<std::string> dns_names(const X509* cert) {
    std::vector<std::string> dns;
    for (auto& name : subject_alt_names(cert))
        if (name.rfind("DNS:", 0) == 0) dns.push_back(name.substr(4));
    return dns;
}

std::string hex(const unsigned char* data, std::size_t size) {
    static constexpr char digits[] = "0123456789abcdef";
    std::string text;
    text.reserve(size * 2);
    for (std::size_t i = 0; i < size; ++i) {
        text += digits[data[i] >> 4];
        text += digits[data[i] & 0x0f];
    }
    return text;
}

std::string sha256_fingerprint(const X509* cert) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int size = 0;
    X509_digest(cert, EVP_sha256(), md, &size);
    return hex(md, size);
}

std::string sha1_fingerprint(const X509* cert) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int size = 0;
    X509_digest(cert, EVP_sha1(), md, &size);
    return hex(md, size);
}

std::string public_key_sha256(const EVP_PKEY* key) {
    unsigned char* der = nullptr;
    int size = i2d_PUBKEY(key, &der);
    if (size <= 0) return {};
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_size = 0;
    EVP_Digest(der, static_cast<std::size_t>(size), md, &md_size, EVP_sha256(), nullptr);
    OPENSSL_free(der);
    return hex(md, md_size);
}

std::string key_type(const EVP_PKEY* key) {
    if (EVP_PKEY_is_a(key, "RSA")) return "rsa-" + std::to_string(EVP_PKEY_get_bits(key));
    if (EVP_PKEY_is_a(key, "EC")) {
        char group[64] = {};
        std::size_t length = 0;
        if (EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group, &length)) {
            std::string g = group;
            if (g == "prime256v1" || g == "P-256") return "ecdsa-p256";
            if (g == "secp384r1" || g == "P-384") return "ecdsa-p384";
            if (g == "secp521r1" || g == "P-521") return "ecdsa-p521";
            return "ecdsa-" + g;
        }
        return "ecdsa";
    }
    if (EVP_PKEY_is_a(key, "ED25519")) return "ed25519";
    if (EVP_PKEY_is_a(key, "ED448")) return "ed448";
    const char* name = EVP_PKEY_get0_type_name(key);
    return name ? name : "unknown";
}

std::string time_text(const ASN1_TIME* time) {
    std::tm tm{};
    if (!time || ASN1_TIME_to_tm(time, &tm) != 1) return {};
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

int days_until(const ASN1_TIME* time) {
    int days = 0, seconds = 0;
    if (!ASN1_TIME_diff(&days, &seconds, nullptr, time)) return 0;
    // ASN1_TIME_diff splits into whole days and a remainder of the same sign; a certificate
    // that expired an hour ago has -0 days and a negative remainder: report it as -1.
    if (days == 0 && seconds < 0) return -1;
    return days;
}

int days_left(const X509* cert) { return days_until(X509_get0_notAfter(cert)); }

bool is_ca(const X509* cert) {
    return (X509_get_extension_flags(const_cast<X509*>(cert)) & EXFLAG_CA) != 0;
}

bool is_self_signed(const X509* cert) { return X509_self_signed(const_cast<X509*>(cert), 1) == 1; }

bool has_server_auth(const X509* cert) {
    X509* c = const_cast<X509*>(cert);
    if (!(X509_get_extension_flags(c) & EXFLAG_XKUSAGE)) return false;   // no EKU extension at all
    return (X509_get_extended_key_usage(c) & XKU_SSL_SERVER) != 0;
}

std::vector<x509_ptr> certificates_from_pem(std::string_view pem, const std::string& source) {
    std::vector<x509_ptr> certs;
    bio_ptr in(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
    while (X509* cert = PEM_read_bio_X509(in.get(), nullptr, nullptr, nullptr)) certs.emplace_back(cert);
    unsigned long last = ERR_peek_last_error();
    if (ERR_GET_REASON(last) == PEM_R_NO_START_LINE && !certs.empty())
        ERR_clear_error();   // the normal end of the input
    else if (last != 0)
        throw tls_error(source + ": damaged PEM certificate: " + openssl_errors());
    if (certs.empty()) throw tls_error(source + ": no PEM certificate in it");
    return certs;
}

std::string to_pem(const X509* cert) {
    bio_ptr out(BIO_new(BIO_s_mem()));
    PEM_write_bio_X509(out.get(), const_cast<X509*>(cert));
    return bio_text(out.get());
}

std::string to_pem(const X509_REQ* request) {
    bio_ptr out(BIO_new(BIO_s_mem()));
    PEM_write_bio_X509_REQ(out.get(), const_cast<X509_REQ*>(request));
    return bio_text(out.get());
}

std::string private_key_to_pem(const EVP_PKEY* key) {
    bio_ptr out(BIO_new(BIO_s_secmem() ? BIO_s_secmem() : BIO_s_mem()));
    PEM_write_bio_PrivateKey(out.get(), const_cast<EVP_PKEY*>(key), nullptr, nullptr, 0, nullptr, nullptr);
    return bio_text(out.get());
}

}  // namespace postern::tls
