#include "tls/peer_verification.hpp"

#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "tls/certificate_info.hpp"
#include "tls/server_context.hpp"

namespace postern::tls {

namespace {

int first_error_index() {
    static int index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
    return index;
}

}  // namespace

int record_verify_result(int preverify_ok, X509_STORE_CTX* store_ctx) {
    if (preverify_ok) return 1;
    auto* ssl = static_cast<SSL*>(X509_STORE_CTX_get_ex_data(store_ctx, SSL_get_ex_data_X509_STORE_CTX_idx()));
    if (ssl && !SSL_get_ex_data(ssl, first_error_index())) {
        // Stored as error + 1 so that 0 keeps meaning "nothing recorded".
        auto value = static_cast<std::intptr_t>(X509_STORE_CTX_get_error(store_ctx)) + 1;
        SSL_set_ex_data(ssl, first_error_index(), reinterpret_cast<void*>(value));
    }
    return 1;
}

long first_verify_error(const SSL* ssl) {
    auto value = reinterpret_cast<std::intptr_t>(SSL_get_ex_data(ssl, first_error_index()));
    return value ? static_cast<long>(value - 1) : X509_V_OK;
}

session_info inspect(const SSL* ssl) {
    session_info info;
    info.protocol = SSL_get_version(ssl);
    if (const SSL_CIPHER* cipher = SSL_get_current_cipher(ssl)) {
        info.cipher = SSL_CIPHER_get_name(cipher);
        info.cipher_bits = SSL_CIPHER_get_bits(cipher, nullptr);
    }
    info.resumed = SSL_session_reused(ssl) == 1;
    const X509* peer = SSL_get0_peer_certificate(ssl);
    if (!peer) return info;
    info.peer.presented = true;
    long error = first_verify_error(ssl);
    if (error == X509_V_OK) error = SSL_get_verify_result(ssl);
    info.peer.verified = error == X509_V_OK;
    if (!info.peer.verified) info.peer.verify_error = X509_verify_cert_error_string(error);
    info.peer.subject = subject_text(peer);
    info.peer.issuer = issuer_text(peer);
    info.peer.sha256 = sha256_fingerprint(peer);
    info.peer.dns_names = dns_names(peer);
    return info;
}

namespace {

std::string normalised_fingerprint(std::string text) {
    if (text.rfind("sha256:", 0) == 0 || text.rfind("SHA256:", 0) == 0) text.erase(0, 7);
    std::string out;
    for (char c : text) {
        if (c == ':' || c == ' ') continue;
        out += static_cast<char>(c >= 'A' && c <= 'F' ? c - 'A' + 'a' : c);
    }
    return out;
}

}  // namespace

bool is_partner(const SSL* ssl, const std::vector<std::string>& names,
                const std::vector<std::string>& fingerprints, std::string* why) {
    auto refuse = [&](std::string reason) {
        if (why) *why = std::move(reason);
        return false;
    };
    const X509* peer = SSL_get0_peer_certificate(ssl);
    if (!peer) return refuse("no client certificate");
    session_info info = inspect(ssl);
    if (!info.peer.verified)
        return refuse("client certificate not verified: " + info.peer.verify_error + " (subject " + info.peer.subject + ")");
    for (const auto& wanted : fingerprints)
        if (normalised_fingerprint(wanted) == info.peer.sha256) return true;
    // RFC 6125: with a DNS subjectAltName present the subject CN is never consulted.
    unsigned flags = X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS;
    if (!info.peer.dns_names.empty()) flags |= X509_CHECK_FLAG_NEVER_CHECK_SUBJECT;
    for (const auto& name : names) {
        // "*.partner.test" in the configuration means any host below partner.test, which is
        // how X509_check_host reads a reference name with a leading dot.
        std::string reference = name.rfind("*.", 0) == 0 ? name.substr(1) : name;
        if (X509_check_host(const_cast<X509*>(peer), reference.data(), reference.size(), flags, nullptr) == 1)
            return true;
    }
    std::string presented;
    for (const auto& n : info.peer.dns_names) presented += (presented.empty() ? "" : ", ") + n;
    return refuse("client certificate " + info.peer.subject + " (names: " +
                  (presented.empty() ? std::string("none") : presented) + ", sha256:" + info.peer.sha256 +
                  ") matches no partner name or fingerprint");
}

}  // namespace postern::tls
