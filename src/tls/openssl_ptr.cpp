#include "tls/openssl_ptr.hpp"

#include <mutex>

#include <openssl/err.h>
#include <openssl/provider.h>

namespace postern::tls {

std::string openssl_errors() {
    std::string text;
    while (unsigned long code = ERR_get_error()) {
        char buf[256];
        ERR_error_string_n(code, buf, sizeof buf);
        if (!text.empty()) text += "; ";
        // "error:0308010C:digital envelope routines::unsupported" -> keep the reason only
        std::string line = buf;
        auto last = line.rfind(':');
        text += last == std::string::npos ? line : line.substr(last + 1);
    }
    return text;
}

void load_providers() {
    static std::once_flag once;
    std::call_once(once, [] {
        // Loading "legacy" explicitly disables the implicit fallback to "default", so both
        // are loaded. The handles live for the whole process on purpose.
        OSSL_PROVIDER_load(nullptr, "default");
        OSSL_PROVIDER_load(nullptr, "legacy");
        ERR_clear_error();   // a missing legacy module only matters for legacy files
    });
}

}  // namespace postern::tls
