// directory/ldap_client.hpp: one connection to an [[ldap_source]] (OpenLDAP's libldap).
//
// Never in clear: ldap:// must take StartTLS, ldaps:// is TLS from the start; either way
// TLS 1.2 or later and the server's certificate verified against ca_file (or the system
// store) and its name. The address goes into the filter escaped per RFC 4515
// (ldap_bv2escaped_filter_value), so `*`, `(`, `)` or `\` in an address can never widen
// the search; an entry counts only when one of the listed attributes holds the address
// itself (case ignored, an "smtp:" prefix of proxyAddresses dropped).
#pragma once

#include <string>
#include <string_view>

#include "config/schema.hpp"

struct ldap;   // OpenLDAP's handle (LDAP)

namespace postern::directory {

/// The filter with %s, %u and %d replaced by the escaped address, local part and domain.
std::string build_filter(std::string_view pattern, std::string_view address);

/// Whether an attribute value names `address`: equal without regard to case, after an
/// optional "smtp:" prefix (Active Directory's proxyAddresses).
bool value_names_address(std::string_view value, std::string_view address);

class ldap_client {
public:
    explicit ldap_client(const config::ldap_source& settings);
    ~ldap_client();
    ldap_client(const ldap_client&) = delete;
    ldap_client& operator=(const ldap_client&) = delete;

    enum class result { found, not_found, failed };
    /// Connects (and binds) first when not connected. On `failed`, why() says why and the
    /// connection is dropped, so the next search starts afresh.
    result search(std::string_view address);
    /// Connect, TLS and bind only: empty when they work, else the reason.
    std::string check();
    const std::string& why() const { return why_; }

private:
    bool connect();
    void drop();

    const config::ldap_source& settings_;
    ::ldap* ld_ = nullptr;
    std::string why_;
};

}  // namespace postern::directory
