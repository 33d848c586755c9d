// log/metrics.hpp: the process's counters, for `[metrics] listen` and `postern status`.
//
// One registry per process (metrics::global()), fed by the receive side (net), the send
// side (delivery) and serve (certificates); read by the daemon's HTTP endpoint and its
// status reply. Every label set is fixed here, so no peer can grow it: TLS versions other
// than TLSv1.2 and TLSv1.3 (which policy refuses anyway) count as "other", and the
// certificate labels are the key ring's own.
//
// Exposition: Prometheus text format 0.0.4
// (https://prometheus.io/docs/instrumenting/exposition_formats/).
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace postern::log {

enum class direction { inbound, outbound };

struct certificate_expiry {
    std::string label;
    std::int64_t not_after = 0;   // seconds since the epoch
};

/// Gauges that are read when asked rather than counted (the queue).
struct queue_gauges {
    std::uint64_t messages = 0;
    std::uint64_t deferred = 0;    // with at least one recipient tried and waiting
    std::uint64_t held = 0;
};

class metrics {
public:
    static metrics& global();

    void message_received() { received_.fetch_add(1, std::memory_order_relaxed); }
    /// Per recipient: one message to three recipients that all arrive counts three.
    void delivered(std::uint64_t n) { delivered_.fetch_add(n, std::memory_order_relaxed); }
    void deferred(std::uint64_t n) { deferred_.fetch_add(n, std::memory_order_relaxed); }
    void bounced(std::uint64_t n) { bounced_.fetch_add(n, std::memory_order_relaxed); }
    /// A session that ended; `tls_protocol` is "" without TLS, else "TLSv1.3" and the like.
    void session(direction d, std::string_view tls_protocol);
    /// The verdict of one TLS handshake: inbound, whether it completed; outbound, the send
    /// connector's verdict (the level it requires was reached).
    void tls_verdict(direction d, bool pass);
    /// The word of one outbound TLS verdict (DESIGN §6: dane-ee, dane-ta, mta-sts, pkix,
    /// opportunistic, cleartext, or an RFC 8460 result type); a word not in
    /// tls_result_words counts as "validation-failure".
    void tls_result(std::string_view word);
    /// One TLS-RPT report handed on: by HTTPS POST (https) or into the queue (mail), and
    /// whether that worked (a 2xx; a durable commit).
    void tlsrpt_report(bool https, bool sent) {
        tlsrpt_reports_[https ? 1 : 0][sent ? 1 : 0].fetch_add(1, std::memory_order_relaxed);
    }
    /// The key ring's certificates, replaced as a whole at start and at reload.
    void set_certificates(std::vector<certificate_expiry> certificates);
    std::vector<certificate_expiry> certificates() const;

    std::uint64_t received() const { return received_.load(std::memory_order_relaxed); }
    std::uint64_t delivered() const { return delivered_.load(std::memory_order_relaxed); }
    std::uint64_t deferred() const { return deferred_.load(std::memory_order_relaxed); }
    std::uint64_t bounced() const { return bounced_.load(std::memory_order_relaxed); }

    /// The whole exposition, with the queue gauges as given.
    std::string prometheus_text(const queue_gauges& queue) const;

private:
    static constexpr std::size_t tls_kinds = 4;   // none, TLSv1.2, TLSv1.3, other
    std::atomic<std::uint64_t> received_{0}, delivered_{0}, deferred_{0}, bounced_{0};
    std::array<std::array<std::atomic<std::uint64_t>, tls_kinds>, 2> sessions_{};
    std::array<std::array<std::atomic<std::uint64_t>, 2>, 2> verdicts_{};   // [direction][fail, pass]
    std::array<std::atomic<std::uint64_t>, 17> tls_results_{};               // by tls_result_words
    std::array<std::array<std::atomic<std::uint64_t>, 2>, 2> tlsrpt_reports_{};   // [mail, https][failed, sent]
    mutable std::mutex certificates_mutex_;
    std::vector<certificate_expiry> certificates_;
};

/// The fixed set of outbound TLS verdict words, the label values of postern_tls_results_total.
inline constexpr std::array<std::string_view, 17> tls_result_words = {
    "dane-ee", "dane-ta", "mta-sts", "pkix", "opportunistic", "cleartext",
    // RFC 8460 §4.3 result types
    "starttls-not-supported", "certificate-host-mismatch", "certificate-expired", "certificate-not-trusted",
    "validation-failure", "tlsa-invalid", "dnssec-invalid", "dane-required", "sts-policy-fetch-error",
    "sts-policy-invalid", "sts-webpki-invalid"};

/// A label value escaped for the text format (backslash, double quote, line feed).
std::string escape_label_value(std::string_view value);

}  // namespace postern::log
