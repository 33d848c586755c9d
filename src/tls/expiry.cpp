#include "tls/expiry.hpp"

#include <algorithm>

#include "tls/certificate_info.hpp"
#include "tls/keyring/stash.hpp"

namespace postern::tls {

std::string expiry_warning::to_string() const {
    std::string what = std::string(role == entry_role::server ? "certificate" : tls::to_string(role)) +
                       " \"" + label + "\" (" + subject + ")";
    if (days_left < 0) return what + " expired " + std::to_string(-days_left) + " day(s) ago (" + not_after + ")";
    if (days_left == 0) return what + " expires within a day (" + not_after + ")";
    return what + " expires in " + std::to_string(days_left) + " day(s) (" + not_after + ")";
}

std::vector<expiry_warning> expiring_certificates(const keyring& ring, int within_days) {
    std::vector<expiry_warning> warnings;
    for (const auto& entry : ring.entries()) {
        if (!entry.certificate) continue;
        // days_left counts whole days; compare against the exact instant instead.
        if (X509_cmp_time(X509_get0_notAfter(entry.certificate.get()), nullptr) > 0) {
            time_t limit = std::time(nullptr) + static_cast<time_t>(within_days) * 86400;
            if (X509_cmp_time(X509_get0_notAfter(entry.certificate.get()), &limit) > 0) continue;
        }
        warnings.push_back({entry.label, entry.role, subject_text(entry.certificate.get()),
                            time_text(X509_get0_notAfter(entry.certificate.get())), days_left(entry.certificate.get())});
    }
    std::sort(warnings.begin(), warnings.end(),
              [](const expiry_warning& a, const expiry_warning& b) { return a.days_left < b.days_left; });
    return warnings;
}

std::vector<std::string> expiry_warnings(const config::configuration& cfg, int within_days) {
    secret password = read_stash(cfg.tls.stash);
    keyring ring = keyring::read(cfg.tls.keyring, password.view());
    std::vector<std::string> lines;
    for (const auto& warning : expiring_certificates(ring, within_days))
        lines.push_back(cfg.tls.keyring.string() + ": " + warning.to_string());
    return lines;
}

}  // namespace postern::tls
