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
        // are loaded. They stay loaded for the whole process and are unloaded at exit:
        // this static is constructed after OpenSSL registered its own exit handler, so it
        // is destroyed before OpenSSL cleans up (and nothing is reported as leaked).
        struct provider_handles {
            OSSL_PROVIDER* default_provider = OSSL_PROVIDER_load(nullptr, "default");
            OSSL_PROVIDER* legacy_provider = OSSL_PROVIDER_load(nullptr, "legacy");
            ~provider_handles() {
                if (legacy_provider != nullptr) OSSL_PROVIDER_unload(legacy_provider);
                if (default_provider != nullptr) OSSL_PROVIDER_unload(default_provider);
            }
        };
        static provider_handles handles;
        ERR_clear_error();   // a missing legacy module only matters for legacy files
    });
}

}  // namespace postern::tls
