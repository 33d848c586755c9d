#include "tls/lab_ca/lab_ca.hpp"

#include <cerrno>
#include <cstring>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <sys/stat.h>

#include "tls/certificate_info.hpp"
#include "tls/error.hpp"
#include "tls/keyring/atomic_file.hpp"
#include "tls/keyring/certificate_request.hpp"

namespace postern::tls {

namespace {

constexpr long seconds_per_day = 86400;

void set_validity(X509* cert, int days) {
    // Backdated by an hour so that a peer whose clock runs a little slow accepts it at once.
    X509_gmtime_adj(X509_getm_notBefore(cert), -3600);
    X509_gmtime_adj(X509_getm_notAfter(cert), static_cast<long>(days) * seconds_per_day);
}

}  // namespace

lab_ca lab_ca::init(const std::filesystem::path& dir, const std::string& subject, int days) {
    if (days < 1 || days > 36500) throw tls_error("--days must be between 1 and 36500");
    std::error_code ec;
    if (!std::filesystem::exists(dir, ec)) {
        if (::mkdir(dir.c_str(), 0700) != 0)
            throw tls_error(dir.string() + ": cannot create the directory: " + std::strerror(errno));
    }
    const auto cert_file = dir / "ca.pem";
    const auto key_file = dir / "ca.key";
    if (std::filesystem::exists(cert_file, ec) || std::filesystem::exists(key_file, ec))
        throw tls_error(dir.string() + ": a lab CA already exists there (ca.pem / ca.key)");

    lab_ca ca;
    ca.key_ = generate_key("ecdsa-p256");
    x509_name_ptr name = parse_distinguished_name(subject);
    ca.cert_.reset(X509_new());
    X509* cert = ca.cert_.get();
    X509_set_version(cert, 2);
    X509_set_serialNumber(cert, random_serial().get());
    X509_set_subject_name(cert, name.get());
    X509_set_issuer_name(cert, name.get());
    set_validity(cert, days);
    X509_set_pubkey(cert, ca.key_.get());
    add_extension(cert, cert, NID_basic_constraints, "critical,CA:TRUE");
    add_extension(cert, cert, NID_key_usage, "critical,keyCertSign,cRLSign");
    add_extension(cert, cert, NID_subject_key_identifier, "hash");
    if (!X509_sign(cert, ca.key_.get(), EVP_sha256())) throw tls_error("cannot sign the root: " + openssl_errors());

    write_file_atomically(key_file, private_key_to_pem(ca.key_.get()), 0600);
    write_file_atomically(cert_file, to_pem(cert), 0644);
    return ca;
}

lab_ca lab_ca::open(const std::filesystem::path& dir) {
    const auto cert_file = dir / "ca.pem";
    const auto key_file = dir / "ca.key";
    struct stat st {};
    if (::stat(key_file.c_str(), &st) != 0)
        throw tls_error(key_file.string() + ": " + std::strerror(errno) + " (run `postern ca --dir " + dir.string() + " init`)");
    if (st.st_mode & (S_IRWXG | S_IRWXO))
        throw tls_error(key_file.string() + ": group or others can access the CA key; it must be 0600");
    lab_ca ca;
    auto certs = certificates_from_pem(read_file(cert_file), cert_file.string());
    ca.cert_ = std::move(certs.front());
    std::string key_pem = read_file(key_file);
    bio_ptr in(BIO_new_mem_buf(key_pem.data(), static_cast<int>(key_pem.size())));
    ca.key_.reset(PEM_read_bio_PrivateKey(in.get(), nullptr, nullptr, nullptr));
    OPENSSL_cleanse(key_pem.data(), key_pem.size());
    if (!ca.key_) throw tls_error(key_file.string() + ": not a readable private key: " + openssl_errors());
    if (X509_check_private_key(ca.cert_.get(), ca.key_.get()) != 1) {
        ERR_clear_error();
        throw tls_error(dir.string() + ": ca.key does not belong to ca.pem");
    }
    return ca;
}

x509_ptr lab_ca::sign(const X509_REQ* request, int days) const {
    if (days < 1 || days > 825) throw tls_error("--days must be between 1 and 825");
    std::vector<std::string> names = requested_names(request);
    if (names.empty())
        throw tls_error("the request has no subjectAltName; peers match names only there (RFC 6125)");
    x509_ptr leaf(X509_new());
    X509* cert = leaf.get();
    X509_set_version(cert, 2);
    X509_set_serialNumber(cert, random_serial().get());
    X509_set_subject_name(cert, X509_REQ_get_subject_name(request));
    X509_set_issuer_name(cert, X509_get_subject_name(cert_.get()));
    set_validity(cert, days);
    // Never beyond the root: a leaf outliving its issuer would fail verification later.
    if (ASN1_TIME_compare(X509_get0_notAfter(cert), X509_get0_notAfter(cert_.get())) > 0)
        X509_set1_notAfter(cert, X509_get0_notAfter(cert_.get()));
    EVP_PKEY* public_key = X509_REQ_get0_pubkey(const_cast<X509_REQ*>(request));
    X509_set_pubkey(cert, public_key);
    X509* issuer = cert_.get();
    add_extension(cert, issuer, NID_basic_constraints, "critical,CA:FALSE");
    add_extension(cert, issuer, NID_key_usage,
                  EVP_PKEY_is_a(public_key, "RSA") ? "critical,digitalSignature,keyEncipherment"
                                                   : "critical,digitalSignature");
    add_extension(cert, issuer, NID_ext_key_usage, "serverAuth,clientAuth");
    add_extension(cert, issuer, NID_subject_key_identifier, "hash");
    add_extension(cert, issuer, NID_authority_key_identifier, "keyid:always");
    std::string joined;
    for (const auto& n : names) joined += (joined.empty() ? "" : ",") + n;
    add_extension(cert, issuer, NID_subject_alt_name, joined);
    if (!X509_sign(cert, key_.get(), EVP_sha256())) throw tls_error("cannot sign the certificate: " + openssl_errors());
    return leaf;
}

}  // namespace postern::tls
