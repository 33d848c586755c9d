// tls/handshake_trace.cpp: handshake messages by name (handshake_trace.hpp).
#include "tls/handshake_trace.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

namespace postern::tls {

namespace {

void trace_message(int write_p, int /*version*/, int content_type, const void* buf, std::size_t len, SSL* /*ssl*/,
                   void* arg) {
    const auto* label = static_cast<const std::string*>(arg);
    const auto* bytes = static_cast<const unsigned char*>(buf);
    std::string what;
    switch (content_type) {
    case SSL3_RT_HANDSHAKE:
        if (len == 0) return;
        what = fmt::format("{} ({} octets)", handshake_message_name(bytes[0]), len);
        break;
    case SSL3_RT_ALERT:
        if (len < 2) return;
        what = fmt::format("alert {} {}", bytes[0] == 2 ? "fatal" : "warning",
                           SSL_alert_desc_string_long(bytes[1]));
        break;
    case SSL3_RT_CHANGE_CIPHER_SPEC: what = "ChangeCipherSpec"; break;
    default: return;   // record headers, inner content types, application data
    }
    spdlog::info("tls-trace {} {} {}", label ? *label : std::string("?"), write_p ? ">>>" : "<<<", what);
}

}  // namespace

std::string handshake_message_name(int type) {
    switch (type) {
    case 0: return "HelloRequest";
    case 1: return "ClientHello";
    case 2: return "ServerHello";
    case 3: return "HelloVerifyRequest";
    case 4: return "NewSessionTicket";
    case 5: return "EndOfEarlyData";
    case 8: return "EncryptedExtensions";
    case 11: return "Certificate";
    case 12: return "ServerKeyExchange";
    case 13: return "CertificateRequest";
    case 14: return "ServerHelloDone";
    case 15: return "CertificateVerify";
    case 16: return "ClientKeyExchange";
    case 20: return "Finished";
    case 22: return "CertificateStatus";
    case 24: return "KeyUpdate";
    case 254: return "MessageHash";
    default: return fmt::format("type {}", type);
    }
}

void enable_handshake_trace(SSL* ssl, const std::string* label) {
    SSL_set_msg_callback(ssl, &trace_message);
    SSL_set_msg_callback_arg(ssl, const_cast<std::string*>(label));
}

}  // namespace postern::tls
