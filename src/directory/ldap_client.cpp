// directory/ldap_client.cpp: see ldap_client.hpp.
#include "directory/ldap_client.hpp"

#include <sys/time.h>

#include <algorithm>
#include <cctype>
#include <fstream>
#include <memory>
#include <vector>

#include <fmt/format.h>
#include <ldap.h>

namespace postern::directory {

namespace {

std::string escaped(std::string_view text) {
    berval in{static_cast<ber_len_t>(text.size()), const_cast<char*>(text.data())};
    berval out{0, nullptr};
    if (ldap_bv2escaped_filter_value(&in, &out) != 0 || !out.bv_val) throw std::bad_alloc();
    std::string result(out.bv_val, out.bv_len);
    ber_memfree(out.bv_val);
    return result;
}

bool equal_folded(std::string_view a, std::string_view b) {
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
               return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
           });
}

timeval as_timeval(std::chrono::seconds s) { return timeval{static_cast<time_t>(s.count()), 0}; }

std::string ldap_reason(::ldap* ld, int rc) {
    std::string text = ldap_err2string(rc);
    char* diagnostic = nullptr;
    if (ld && ldap_get_option(ld, LDAP_OPT_DIAGNOSTIC_MESSAGE, &diagnostic) == LDAP_OPT_SUCCESS && diagnostic) {
        if (*diagnostic) text += fmt::format(" ({})", diagnostic);
        ldap_memfree(diagnostic);
    }
    return text;
}

std::string read_password(const std::filesystem::path& file, std::string& why) {
    std::ifstream in(file);
    std::string line;
    if (!in || !std::getline(in, line)) {
        why = fmt::format("cannot read bind_password_file {}", file.string());
        return {};
    }
    if (!line.empty() && line.back() == '\r') line.pop_back();
    return line;
}

}  // namespace

std::string build_filter(std::string_view pattern, std::string_view address) {
    const auto at = address.rfind('@');
    const std::string_view local = at == std::string_view::npos ? address : address.substr(0, at);
    const std::string_view domain = at == std::string_view::npos ? std::string_view() : address.substr(at + 1);
    std::string out;
    for (std::size_t i = 0; i < pattern.size(); ++i) {
        if (pattern[i] != '%' || i + 1 == pattern.size()) {
            out += pattern[i];
            continue;
        }
        switch (pattern[++i]) {
        case 's': out += escaped(address); break;
        case 'u': out += escaped(local); break;
        case 'd': out += escaped(domain); break;
        case '%': out += '%'; break;
        default: out += '%'; out += pattern[i]; break;   // refused by config validation
        }
    }
    return out;
}

bool value_names_address(std::string_view value, std::string_view address) {
    if (value.size() > 5 && equal_folded(value.substr(0, 5), "smtp:")) value.remove_prefix(5);
    return equal_folded(value, address);
}

ldap_client::ldap_client(const config::ldap_source& settings) : settings_(settings) {}

ldap_client::~ldap_client() { drop(); }

void ldap_client::drop() {
    if (ld_) ldap_unbind_ext_s(ld_, nullptr, nullptr);
    ld_ = nullptr;
}

bool ldap_client::connect() {
    if (ld_) return true;
    const auto& s = settings_;
    int rc = ldap_initialize(&ld_, s.uri.c_str());
    if (rc != LDAP_SUCCESS) {
        why_ = fmt::format("{}: {}", s.uri, ldap_err2string(rc));
        ld_ = nullptr;
        return false;
    }
    const int version = LDAP_VERSION3;
    const timeval limit = as_timeval(s.timeout);
    const int demand = LDAP_OPT_X_TLS_DEMAND, tls12 = LDAP_OPT_X_TLS_PROTOCOL_TLS1_2, fresh = 0;
    ldap_set_option(ld_, LDAP_OPT_PROTOCOL_VERSION, &version);
    ldap_set_option(ld_, LDAP_OPT_REFERRALS, LDAP_OPT_OFF);   // a referral would take the bind elsewhere
    ldap_set_option(ld_, LDAP_OPT_NETWORK_TIMEOUT, &limit);
    ldap_set_option(ld_, LDAP_OPT_TIMEOUT, &limit);
    ldap_set_option(ld_, LDAP_OPT_X_TLS_REQUIRE_CERT, &demand);
    ldap_set_option(ld_, LDAP_OPT_X_TLS_PROTOCOL_MIN, &tls12);
    if (!s.ca_file.empty()) ldap_set_option(ld_, LDAP_OPT_X_TLS_CACERTFILE, s.ca_file.c_str());
    rc = ldap_set_option(ld_, LDAP_OPT_X_TLS_NEWCTX, &fresh);   // the options above, for this handle only
    if (rc != LDAP_OPT_SUCCESS) {
        why_ = fmt::format("{}: TLS settings refused (ca_file {})", s.uri, s.ca_file.string());
        drop();
        return false;
    }
    if (s.uri.starts_with("ldap://")) {
        rc = ldap_start_tls_s(ld_, nullptr, nullptr);
        if (rc != LDAP_SUCCESS) {
            why_ = fmt::format("{}: StartTLS failed: {}", s.uri,
                               rc == LDAP_CONNECT_ERROR
                                   ? std::string("the TLS handshake failed (is the server's certificate issued by a "
                                                 "root in ca_file, or the system store, for the host in uri?)")
                                   : ldap_reason(ld_, rc));
            drop();
            return false;
        }
    }
    std::string password;
    if (!s.bind_dn.empty()) {
        password = read_password(s.bind_password_file, why_);
        if (!why_.empty()) {
            drop();
            return false;
        }
    }
    berval credentials{static_cast<ber_len_t>(password.size()), password.data()};
    rc = ldap_sasl_bind_s(ld_, s.bind_dn.empty() ? nullptr : s.bind_dn.c_str(), LDAP_SASL_SIMPLE, &credentials,
                          nullptr, nullptr, nullptr);
    std::fill(password.begin(), password.end(), '\0');
    if (rc != LDAP_SUCCESS) {
        why_ = fmt::format("{}: bind as {} failed: {}", s.uri, s.bind_dn.empty() ? "anonymous" : s.bind_dn,
                           ldap_reason(ld_, rc));
        drop();
        return false;
    }
    return true;
}

std::string ldap_client::check() {
    why_.clear();
    return connect() ? std::string() : why_;
}

ldap_client::result ldap_client::search(std::string_view address) {
    why_.clear();
    if (!connect()) return result::failed;
    const auto& s = settings_;
    const std::string filter = build_filter(s.filter, address);
    std::vector<char*> attributes;
    for (const auto& a : s.attributes) attributes.push_back(const_cast<char*>(a.c_str()));
    attributes.push_back(nullptr);
    timeval limit = as_timeval(s.timeout);
    LDAPMessage* answer = nullptr;
    // Ten entries are plenty to find the one that holds the address; more means a filter
    // far wider than one person, and the entries found are still checked.
    int rc = ldap_search_ext_s(ld_, s.base.c_str(), LDAP_SCOPE_SUBTREE, filter.c_str(), attributes.data(), 0,
                               nullptr, nullptr, &limit, 10, &answer);
    std::unique_ptr<LDAPMessage, int (*)(LDAPMessage*)> holder(answer, &ldap_msgfree);
    if (rc != LDAP_SUCCESS && rc != LDAP_SIZELIMIT_EXCEEDED) {
        why_ = fmt::format("{}: search in {} failed: {}", s.uri, s.base, ldap_reason(ld_, rc));
        drop();
        return result::failed;
    }
    for (LDAPMessage* e = ldap_first_entry(ld_, answer); e; e = ldap_next_entry(ld_, e))
        for (const auto& name : s.attributes) {
            berval** values = ldap_get_values_len(ld_, e, name.c_str());
            if (!values) continue;
            bool named = false;
            for (berval** v = values; *v && !named; ++v)
                named = value_names_address(std::string_view((*v)->bv_val, (*v)->bv_len), address);
            ldap_value_free_len(values);
            if (named) return result::found;
        }
    return result::not_found;
}

}  // namespace postern::directory
