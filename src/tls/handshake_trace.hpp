// tls/handshake_trace.hpp: [debug] trace_tls_handshake, for both directions.
//
// OpenSSL's message callback, one server-log line per handshake message, alert or
// ChangeCipherSpec, named as RFC 8446 §4 and RFC 5246 §7.4 name them: "tls-trace LABEL >>>
// ClientHello (512 octets)" for what we send, "<<<" for what we receive. Only message
// types and lengths: no key material, no certificate contents.
#pragma once

#include <string>
#include <string_view>

#include <openssl/ssl.h>

namespace postern::tls {

/// The name of a TLS handshake message type ("ClientHello" for 1); "type N" when unknown.
std::string handshake_message_name(int type);

/// Traces `ssl`'s handshake to the server log under `label` (e.g. "receive connector
/// inbound 192.0.2.1:40000"). `label` must outlive `ssl`.
void enable_handshake_trace(SSL* ssl, const std::string* label);

}  // namespace postern::tls
