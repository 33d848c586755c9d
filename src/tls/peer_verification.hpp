// tls/peer_verification.hpp: how the outcome of certificate verification reaches a session.
#pragma once

#include <openssl/ssl.h>

namespace postern::tls {

/// SSL verify callback: never stops the handshake (DESIGN.md §5: the session answers
/// 554 5.7.0 instead), but remembers the first error on the SSL so inspect() reports the
/// root cause rather than whatever error OpenSSL met last.
int record_verify_result(int preverify_ok, X509_STORE_CTX* store_ctx);

/// The first verification error recorded on `ssl` by record_verify_result, or X509_V_OK.
long first_verify_error(const SSL* ssl);

}  // namespace postern::tls
