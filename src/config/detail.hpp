// config/detail.hpp: pieces shared by the loader, the validator, `config show` and
// `config set`. Not a public interface: other rooms use schema.hpp, show.hpp and edit.hpp.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "config/schema.hpp"

namespace postern::config::detail {

using config::source_lines;

/// Collects errors and warnings for one file.
class diagnostics {
public:
    explicit diagnostics(std::filesystem::path file) : file_(std::move(file)) {}
    void error(std::string key, std::uint32_t line, std::string message);
    void warning(std::string key, std::uint32_t line, std::string message);
    const std::filesystem::path& file() const { return file_; }
    std::vector<diagnostic> errors;
    std::vector<diagnostic> warnings;

private:
    std::filesystem::path file_;
};

/// The candidate nearest to `word` by edit distance (insertions, deletions, substitutions
/// and swaps of neighbours), when it is near enough to be a typo of it: at most a third of
/// the word's length, at least 1. Empty when none is.
std::string closest_word(std::string_view word, const std::vector<std::string>& candidates);

/// The cross-key checks of DESIGN.md §3 ("Errors, not warnings"), on a loaded file.
void validate(const configuration& config, const source_lines& lines, diagnostics& out);

/// The weak-TLS checks alone; each returns an empty string when the setting is acceptable,
/// otherwise the reason, naming the offending suite or version.
std::string check_min_version(std::string_view version);
std::string check_cipher_list(std::string_view ciphers);     // TLS 1.2 and below
std::string check_ciphersuites(std::string_view suites);     // TLS 1.3

/// "10.0.0.0/8", "2001:db8::/32", or a single address (full-length prefix).
/// IPv4-mapped IPv6 ranges are stored as the IPv4 range they mean.
std::optional<ip_range> parse_ip_range(std::string_view text, std::string& why);

enum class host_kind { ip_address, ip_or_name };
/// "192.0.2.1:25", "[2001:db8::1]:25", "relay.example.test:25". Without a port,
/// default_port is used when it is non-zero, otherwise the port is required.
std::optional<endpoint> parse_endpoint(std::string_view text, host_kind kind,
                                       std::uint16_t default_port, std::string& why);

/// "sha256:AB:CD..." or "sha256:abcd..." -> 64 lower-case hex digits.
std::optional<std::string> normalise_fingerprint(std::string_view text, std::string& why);

/// Lower case without a final dot: how domains are compared.
std::string fold_domain(std::string_view domain);

/// A host name or domain per RFC 1123 (letters, digits, hyphens; dots between labels).
bool is_domain_name(std::string_view text);

/// Inverse of parse_size / parse_duration, choosing the largest exact unit.
std::string format_size(std::uint64_t octets);
std::string format_duration(seconds value);

/// A TOML basic string literal, quotes and escapes included.
std::string toml_string(std::string_view text);

/// gethostname(), made canonical through getaddrinfo(AI_CANONNAME) when possible.
std::string system_fqdn();

// Names of enumerated values as written in the file (DESIGN.md §3).
template <class E>
struct enum_name {
    std::string_view name;
    E value;
};
inline constexpr enum_name<tls_mode> tls_mode_names[] = {
    {"starttls", tls_mode::starttls}, {"implicit", tls_mode::implicit}, {"none", tls_mode::none}};
inline constexpr enum_name<auth_mechanism> auth_mechanism_names[] = {
    {"tls", auth_mechanism::tls}, {"mutual_tls", auth_mechanism::mutual_tls}};
inline constexpr enum_name<permission_group> permission_group_names[] = {
    {"anonymous_users", permission_group::anonymous_users}, {"partners", permission_group::partners}};
inline constexpr enum_name<tls_auth_level> tls_auth_level_names[] = {
    {"encryption_only", tls_auth_level::encryption_only},
    {"certificate_validation", tls_auth_level::certificate_validation},
    {"domain_validation", tls_auth_level::domain_validation}};
inline constexpr enum_name<smart_host_tls> smart_host_tls_names[] = {
    {"starttls", smart_host_tls::starttls}, {"implicit", smart_host_tls::implicit}};
inline constexpr enum_name<dane_mode> dane_mode_names[] = {
    {"off", dane_mode::off}, {"opportunistic", dane_mode::opportunistic}, {"required", dane_mode::required}};
inline constexpr enum_name<downgrade_protection> downgrade_protection_names[] = {
    {"off", downgrade_protection::off}, {"report", downgrade_protection::report},
    {"enforce", downgrade_protection::enforce}};
inline constexpr enum_name<protocol_logging> protocol_logging_names[] = {
    {"verbose", protocol_logging::verbose}, {"none", protocol_logging::none}};
inline constexpr enum_name<accepted_domain_type> accepted_domain_type_names[] = {
    {"internal_relay", accepted_domain_type::internal_relay}, {"authoritative", accepted_domain_type::authoritative}};

/// Reads the recipient lists the configuration names ([[send_connector]] and
/// [[accepted_domain]] recipients), relative to the configuration file's directory; a
/// list that cannot be read or has a bad line is an error naming its line. Warns about an
/// empty list and an address listed for two send connectors.
void load_recipient_lists(configuration& config, const source_lines& lines, diagnostics& out);

template <class E, std::size_t N>
std::string_view name_of(const enum_name<E> (&names)[N], E value) {
    for (const auto& n : names)
        if (n.value == value) return n.name;
    return {};
}

/// Dotted key of a connector's setting: ("receive_connector", 0, "tls") -> "receive_connector[0].tls".
std::string connector_key(std::string_view kind, std::size_t index, std::string_view key = {});

}  // namespace postern::config::detail
