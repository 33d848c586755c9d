#include "tls/keyring/certificate_request.hpp"

#include <algorithm>
#include <cctype>

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>

#include "tls/certificate_info.hpp"
#include "tls/error.hpp"

namespace postern::tls {

evp_pkey_ptr generate_key(std::string_view type) {
    EVP_PKEY* key = nullptr;
    if (type == "rsa-2048") key = EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", static_cast<size_t>(2048));
    else if (type == "rsa-3072") key = EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", static_cast<size_t>(3072));
    else if (type == "rsa-4096") key = EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", static_cast<size_t>(4096));
    else if (type == "ecdsa-p256") key = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
    else if (type == "ecdsa-p384") key = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-384");
    else {
        std::string known;
        for (auto t : key_types) known += (known.empty() ? "" : ", ") + std::string(t);
        throw tls_error("unknown key type \"" + std::string(type) + "\" (one of " + known + ")");
    }
    if (!key) throw tls_error("cannot generate a " + std::string(type) + " key: " + openssl_errors());
    return evp_pkey_ptr(key);
}

namespace {

std::string trim(std::string_view text) {
    auto begin = text.find_first_not_of(" \t");
    if (begin == std::string_view::npos) return {};
    auto end = text.find_last_not_of(" \t");
    return std::string(text.substr(begin, end - begin + 1));
}

/// Splits on `separator` outside backslash escapes, unescaping as it goes.
std::vector<std::string> split_escaped(std::string_view text, char separator) {
    std::vector<std::string> parts(1);
    for (std::size_t i = 0; i < text.size(); ++i) {
        char c = text[i];
        if (c == '\\' && i + 1 < text.size()) {
            parts.back() += text[++i];
        } else if (c == separator) {
            parts.emplace_back();
        } else {
            parts.back() += c;
        }
    }
    return parts;
}

}  // namespace

x509_name_ptr parse_distinguished_name(std::string_view text) {
    std::string_view body = text;
    char separator = ',';
    if (!body.empty() && body.front() == '/') {
        separator = '/';
        body.remove_prefix(1);
    }
    x509_name_ptr name(X509_NAME_new());
    std::vector<std::string> parts = split_escaped(body, separator);
    // RFC 4514 strings list the most specific RDN first, the reverse of the encoded order;
    // OpenSSL's slash form lists them in encoded order. Either way the certificate then
    // prints back the way it was written.
    if (separator == ',') std::reverse(parts.begin(), parts.end());
    for (auto& part : parts) {
        std::string rdn = trim(part);
        if (rdn.empty()) continue;
        auto equals = rdn.find('=');
        if (equals == std::string::npos || equals == 0)
            throw tls_error("subject \"" + std::string(text) + "\": \"" + rdn + "\" is not TYPE=value");
        std::string type = trim(std::string_view(rdn).substr(0, equals));
        std::string value = trim(std::string_view(rdn).substr(equals + 1));
        if (value.empty()) throw tls_error("subject \"" + std::string(text) + "\": " + type + " has no value");
        if (OBJ_txt2nid(type.c_str()) == NID_undef)
            throw tls_error("subject \"" + std::string(text) + "\": unknown attribute type \"" + type + "\"");
        if (!X509_NAME_add_entry_by_txt(name.get(), type.c_str(), MBSTRING_UTF8,
                                        reinterpret_cast<const unsigned char*>(value.c_str()), -1, -1, 0))
            throw tls_error("subject \"" + std::string(text) + "\": bad " + type + " value (" + openssl_errors() + ")");
    }
    if (X509_NAME_entry_count(name.get()) == 0) throw tls_error("subject \"" + std::string(text) + "\" is empty");
    return name;
}

namespace {

bool plausible_host_name(const std::string& name) {
    if (name.empty() || name.size() > 253) return false;
    std::string_view rest = name;
    if (rest.rfind("*.", 0) == 0) rest.remove_prefix(2);   // a wildcard only as the whole left label
    std::size_t label_length = 0;
    for (char c : rest) {
        if (c == '.') {
            if (label_length == 0) return false;
            label_length = 0;
        } else if (std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_') {
            if (++label_length > 63) return false;
        } else {
            return false;
        }
    }
    return label_length > 0;
}

}  // namespace

std::vector<std::string> parse_subject_alt_names(std::string_view text) {
    std::vector<std::string> names;
    for (auto& part : split_escaped(text, ',')) {
        std::string item = trim(part);
        if (item.empty()) continue;
        auto colon = item.find(':');
        std::string kind = colon == std::string::npos ? std::string() : item.substr(0, colon);
        std::string value = colon == std::string::npos ? std::string() : trim(std::string_view(item).substr(colon + 1));
        std::transform(kind.begin(), kind.end(), kind.begin(), [](unsigned char c) { return std::toupper(c); });
        if (kind == "DNS") {
            if (!plausible_host_name(value)) throw tls_error("--san: \"" + value + "\" is not a DNS name");
            std::transform(value.begin(), value.end(), value.begin(), [](unsigned char c) { return std::tolower(c); });
        } else if (kind == "IP") {
            unsigned char buf[16];
            if (::inet_pton(AF_INET, value.c_str(), buf) != 1 && ::inet_pton(AF_INET6, value.c_str(), buf) != 1)
                throw tls_error("--san: \"" + value + "\" is not an IP address");
        } else {
            throw tls_error("--san: \"" + item + "\" must be DNS:name or IP:address");
        }
        names.push_back(kind + ":" + value);
    }
    return names;
}

x509_req_ptr make_request(EVP_PKEY* key, const X509_NAME* subject, const std::vector<std::string>& names) {
    x509_req_ptr request(X509_REQ_new());
    X509_REQ_set_version(request.get(), 0);   // PKCS#10 v1, the only version
    X509_REQ_set_subject_name(request.get(), subject);
    X509_REQ_set_pubkey(request.get(), key);
    if (!names.empty()) {
        std::string joined;
        for (const auto& n : names) joined += (joined.empty() ? "" : ",") + n;
        X509V3_CTX v3;
        X509V3_set_ctx_nodb(&v3);
        X509V3_set_ctx(&v3, nullptr, nullptr, request.get(), nullptr, 0);
        x509_extension_ptr san(X509V3_EXT_conf_nid(nullptr, &v3, NID_subject_alt_name, joined.c_str()));
        if (!san) throw tls_error("subjectAltName \"" + joined + "\": " + openssl_errors());
        STACK_OF(X509_EXTENSION)* extensions = sk_X509_EXTENSION_new_null();
        sk_X509_EXTENSION_push(extensions, san.get());
        int ok = X509_REQ_add_extensions(request.get(), extensions);
        sk_X509_EXTENSION_free(extensions);
        if (!ok) throw tls_error("cannot add subjectAltName to the request: " + openssl_errors());
    }
    if (!X509_REQ_sign(request.get(), key, EVP_sha256()))
        throw tls_error("cannot sign the request: " + openssl_errors());
    return request;
}

std::vector<std::string> requested_names(const X509_REQ* request) {
    std::vector<std::string> names;
    STACK_OF(X509_EXTENSION)* extensions = X509_REQ_get_extensions(const_cast<X509_REQ*>(request));
    if (!extensions) return names;
    // A throwaway certificate lets certificate_info's SAN reader do the formatting.
    x509_ptr carrier(X509_new());
    for (int i = 0; i < sk_X509_EXTENSION_num(extensions); ++i) {
        X509_EXTENSION* ext = sk_X509_EXTENSION_value(extensions, i);
        if (OBJ_obj2nid(X509_EXTENSION_get_object(ext)) == NID_subject_alt_name) X509_add_ext(carrier.get(), ext, -1);
    }
    sk_X509_EXTENSION_pop_free(extensions, X509_EXTENSION_free);
    return subject_alt_names(carrier.get());
}

x509_req_ptr request_from_text(std::string_view text, const std::string& source) {
    bio_ptr in(BIO_new_mem_buf(text.data(), static_cast<int>(text.size())));
    x509_req_ptr request(PEM_read_bio_X509_REQ(in.get(), nullptr, nullptr, nullptr));
    if (!request) {
        ERR_clear_error();
        auto* cursor = reinterpret_cast<const unsigned char*>(text.data());
        request.reset(d2i_X509_REQ(nullptr, &cursor, static_cast<long>(text.size())));
    }
    if (!request) throw tls_error(source + ": not a certificate request (PEM or DER PKCS#10)");
    EVP_PKEY* key = X509_REQ_get0_pubkey(request.get());
    if (!key || X509_REQ_verify(request.get(), key) != 1) {
        ERR_clear_error();
        throw tls_error(source + ": the request's signature does not verify");
    }
    return request;
}

asn1_integer_ptr random_serial() {
    unsigned char bytes[20];
    if (RAND_bytes(bytes, sizeof bytes) != 1) throw tls_error("cannot draw a serial number: " + openssl_errors());
    bytes[0] &= 0x7f;   // positive
    bytes[0] |= 0x40;   // and a full 159 bits, so the length never shrinks
    bignum_ptr bn(BN_bin2bn(bytes, sizeof bytes, nullptr));
    return asn1_integer_ptr(BN_to_ASN1_INTEGER(bn.get(), nullptr));
}

void add_extension(X509* cert, X509* issuer, int nid, const std::string& value) {
    X509V3_CTX v3;
    X509V3_set_ctx_nodb(&v3);
    X509V3_set_ctx(&v3, issuer, cert, nullptr, nullptr, 0);
    x509_extension_ptr ext(X509V3_EXT_conf_nid(nullptr, &v3, nid, value.c_str()));
    if (!ext || !X509_add_ext(cert, ext.get(), -1))
        throw tls_error(std::string("cannot add ") + OBJ_nid2sn(nid) + " \"" + value + "\": " + openssl_errors());
}

}  // namespace postern::tls
