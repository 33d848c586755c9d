// policy/dane.hpp: DANE for SMTP (RFC 7672): what a host's TLSA records demand, and
// OpenSSL's own DANE verification set up for one connection.
//
// RFC 7672 §2.2 and the rules of DESIGN §3 `dane`: TLSA records count only for a host
// whose MX answer and address answers were DNSSEC-secure (an insecure answer could have
// been forged along with the records). Then:
//   - usable records (DANE-TA(2), DANE-EE(3); selector 0/1; matching 0/1/2 with data of
//     the right length) make DANE authentication mandatory for that host: no fallback to
//     PKIX, unauthenticated TLS or cleartext;
//   - only unusable records (PKIX-TA(0), PKIX-EE(1), unknown parameters): TLS is
//     mandatory, unauthenticated (§3.1.3 and §2.2);
//   - a bogus or failed TLSA lookup makes the host unusable: try the next MX, else defer;
//   - no records, or an insecure answer: DANE does not apply.
// DANE-EE(3) ignores names and validity dates (§3.1.1, DANE_FLAG_NO_DANE_EE_NAMECHECKS);
// DANE-TA(2) needs a name match against the reference identifiers: the TLSA base domain
// (the MX host name; after CNAME expansion, both names) and the next-hop domain (§3.2.2).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <openssl/ssl.h>

#include "config/schema.hpp"
#include "route/resolver.hpp"

namespace postern::policy {

/// Whether OpenSSL's DANE verifier can use a record as RFC 7672 allows for SMTP.
bool usable_for_smtp(const route::tlsa_record& r);

struct dane_requirement {
    enum class kind {
        not_applicable,       // no DANE for this host: the connector's own rules apply
        authenticate,         // `records` must authenticate the peer (dane-ee / dane-ta)
        tls_unauthenticated,  // TLSA exists but none usable: TLS mandatory, not verified
        host_unusable,        // bogus or failed TLSA lookup (or dane = "required" unmet): next MX
    };
    kind what = kind::not_applicable;
    std::vector<route::tlsa_record> records;   // authenticate: the usable ones
    std::string reason;                        // why, for the send log and DSNs
    /// RFC 7672 §2.2.2: the TLSA base domain when it is the CNAME-expanded name of the MX
    /// host (records found there); "" when it is the MX host name itself.
    std::string base;
};

/// `mx_secure`: the MX answer (or, for an A/AAAA fallback, the domain's address answer)
/// was DNSSEC-secure; `address_secure`: the host's own address answers were.
dane_requirement dane_for_host(config::dane_mode mode, bool mx_secure, bool address_secure,
                               const route::tlsa_answer& tlsa);

/// Makes `ctx` able to do DANE (SSL_CTX_dane_enable); call once per client context.
bool enable_dane(SSL_CTX* ctx);

/// Sets up one connection: DANE with `records`, `base_domain` (the TLSA base: the MX
/// host) and the further reference identifiers `names`; DANE-EE without name checks.
/// Returns an error text, empty on success.
std::string arm_dane(SSL* ssl, const std::string& base_domain, const std::vector<std::string>& names,
                     const std::vector<route::tlsa_record>& records);

/// After a handshake on a connection armed with arm_dane(): "dane-ee" or "dane-ta" when
/// a record authenticated the peer (and the chain verified), else empty.
std::string dane_verdict(SSL* ssl);

}  // namespace postern::policy
