// policy/dane.cpp: see dane.hpp.
#include "policy/dane.hpp"

#include <openssl/x509v3.h>

#include <fmt/format.h>

namespace postern::policy {

bool usable_for_smtp(const route::tlsa_record& r) {
    if (r.usage != 2 && r.usage != 3) return false;   // PKIX-TA(0)/PKIX-EE(1): not for SMTP (§3.1.3)
    if (r.selector > 1) return false;
    switch (r.matching) {
    case 0: return !r.data.empty();
    case 1: return r.data.size() == 32;   // SHA2-256
    case 2: return r.data.size() == 64;   // SHA2-512
    default: return false;
    }
}

dane_requirement dane_for_host(config::dane_mode mode, bool mx_secure, bool address_secure,
                               const route::tlsa_answer& tlsa) {
    using kind = dane_requirement::kind;
    dane_requirement out;
    if (mode == config::dane_mode::off) return out;
    auto unmet = [&](std::string why) {
        if (mode == config::dane_mode::required) {
            out.what = kind::host_unusable;
            out.reason = "dane = \"required\": " + why;
        } else {
            out.reason = std::move(why);
        }
        return out;
    };
    if (!mx_secure) return unmet("the MX answer is not DNSSEC-secure, so DANE does not apply");
    if (!address_secure) return unmet("the host's address answer is not DNSSEC-secure, so DANE does not apply");
    switch (tlsa.what) {
    case route::tlsa_answer::kind::bogus:
    case route::tlsa_answer::kind::failed:
        out.what = kind::host_unusable;
        out.reason = tlsa.reason.empty() ? std::string("the TLSA lookup failed") : tlsa.reason;
        return out;
    case route::tlsa_answer::kind::none:
        return unmet("the host publishes no TLSA records");
    case route::tlsa_answer::kind::records:
        break;
    }
    if (tlsa.status != route::dnssec::secure) return unmet("the TLSA answer is not DNSSEC-secure");
    for (const auto& r : tlsa.records)
        if (usable_for_smtp(r)) out.records.push_back(r);
    if (out.records.empty()) {
        if (mode == config::dane_mode::required) return unmet("no TLSA record is usable for SMTP");
        out.what = kind::tls_unauthenticated;
        out.reason = "TLSA records exist but none is usable for SMTP: TLS without authentication";
        return out;
    }
    out.what = kind::authenticate;
    out.reason = fmt::format("{} usable TLSA record(s)", out.records.size());
    return out;
}

bool enable_dane(SSL_CTX* ctx) { return SSL_CTX_dane_enable(ctx) > 0; }

std::string arm_dane(SSL* ssl, const std::string& base_domain, const std::vector<std::string>& names,
                     const std::vector<route::tlsa_record>& records) {
    if (SSL_dane_enable(ssl, base_domain.c_str()) <= 0) return "cannot enable DANE on the connection";
    SSL_dane_set_flags(ssl, DANE_FLAG_NO_DANE_EE_NAMECHECKS);
    for (const auto& name : names)
        if (name != base_domain && SSL_add1_host(ssl, name.c_str()) != 1)
            return fmt::format("cannot add {} as a reference identifier", name);
    int added = 0;
    for (const auto& r : records) {
        const int rc = SSL_dane_tlsa_add(ssl, r.usage, r.selector, r.matching, r.data.data(), r.data.size());
        if (rc > 0) ++added;
    }
    if (added == 0) return "OpenSSL took none of the TLSA records";
    // A DANE peer that fails verification must fail the handshake, not merely be noted.
    SSL_set_verify(ssl, SSL_VERIFY_PEER, nullptr);
    return {};
}

std::string dane_verdict(SSL* ssl) {
    if (SSL_get_verify_result(ssl) != X509_V_OK) return {};
    std::uint8_t usage = 0, selector = 0, matching = 0;
    const unsigned char* data = nullptr;
    std::size_t length = 0;
    if (SSL_get0_dane_tlsa(ssl, &usage, &selector, &matching, &data, &length) < 0) return {};
    return usage == 3 ? "dane-ee" : usage == 2 ? "dane-ta" : std::string();
}

}  // namespace postern::policy
