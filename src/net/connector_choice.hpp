// net/connector_choice.hpp: which [[receive_connector]] serves a client, and what that
// connector asks of the protocol.
//
// Contract: DESIGN.md §3 "Connector choice": by local bind, then the most specific
// remote_ip_ranges; IPv4-mapped IPv6 addresses match as IPv4; no match -> 554 5.7.1.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>

#include "config/schema.hpp"
#include "net/session.hpp"
#include "smtp/server_fsm.hpp"

namespace postern::net {

/// ::ffff:192.0.2.1 -> 192.0.2.1; every other address unchanged.
boost::asio::ip::address unmapped(const boost::asio::ip::address& a);

/// The group a client's connections are counted in (DESIGN §3 max_connections_per_source):
/// the address itself for IPv4 (and IPv4-mapped IPv6), its /64 for IPv6 ("2001:db8:1:2::/64"),
/// since one IPv6 host may hold a whole /64.
std::string source_group(const boost::asio::ip::address& a);

/// "192.0.2.1:25", "[2001:db8::1]:25" (IPv4-mapped addresses written as IPv4).
std::string endpoint_text(const boost::asio::ip::tcp::endpoint& e);

/// How a bind is named: as written in the file ("127.0.0.1:0"), or host:port when not.
std::string bind_key(const config::endpoint& e);

/// The connectors (indices into cfg.receive_connectors) that list `bind` (as written).
std::vector<std::size_t> connectors_on_bind(const config::configuration& cfg, const std::string& bind);

/// Among `candidates`, the connector whose remote_ip_ranges hold `client` with the longest
/// prefix. An empty remote_ip_ranges means every address (the schema's default).
std::optional<std::size_t> choose_connector(const config::configuration& cfg,
                                            const std::vector<std::size_t>& candidates,
                                            const boost::asio::ip::address& client);

/// True when the connector lists "mutual_tls" in auth_mechanisms.
bool wants_mutual_tls(const config::receive_connector& c);

/// The protocol's view of a connector and of [server].
smtp::server_policy policy_for(const config::configuration& cfg, const config::receive_connector& c);

/// How a session asks a directory about a recipient the policy's check_recipient could not
/// settle at once (session_setup::ask_directory); empty when no domain uses a directory.
std::function<void(const std::string&, session_setup::recipient_answer)> recipient_asker(
    const config::configuration& cfg);

/// Accepted domains that no send connector's address_spaces cover (as configured: an
/// exact name, "*.suffix" or "*"). Mail for them could only bounce, so RCPT gets 451.
std::vector<std::string> unrouted_domains(const config::configuration& cfg);

}  // namespace postern::net
