// tlsrpt/report_mail.cpp: see report_mail.hpp.
#include "tlsrpt/report_mail.hpp"

#include <stdexcept>

#include <openssl/evp.h>
#include <zlib.h>

#include <fmt/format.h>

#include "policy/state_file.hpp"
#include "smtp/message_header.hpp"

namespace postern::tlsrpt {

namespace {

long long epoch_seconds(smtp::sys_time t) {
    return std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()).count();
}

/// RFC 2045 §6.8: base64 in lines of 76 characters.
std::string base64_lines(std::string_view data) {
    std::string out;
    constexpr std::size_t per_line = 57;   // 57 octets -> 76 characters
    std::string line(80, '\0');
    for (std::size_t at = 0; at < data.size(); at += per_line) {
        const auto n = std::min(per_line, data.size() - at);
        const int written = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(line.data()),
                                            reinterpret_cast<const unsigned char*>(data.data() + at), static_cast<int>(n));
        out.append(line.data(), static_cast<std::size_t>(written));
        out += "\r\n";
    }
    return out;
}

}  // namespace

std::string gzip(std::string_view data) {
    z_stream z{};
    // windowBits 15 + 16: a gzip wrapper (RFC 1952) rather than zlib's own.
    if (deflateInit2(&z, Z_BEST_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        throw std::runtime_error("gzip: deflateInit2 failed");
    std::string out(deflateBound(&z, static_cast<uLong>(data.size())) + 32, '\0');
    z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
    z.avail_in = static_cast<uInt>(data.size());
    z.next_out = reinterpret_cast<Bytef*>(out.data());
    z.avail_out = static_cast<uInt>(out.size());
    const int rc = deflate(&z, Z_FINISH);
    const auto produced = out.size() - z.avail_out;
    deflateEnd(&z);
    if (rc != Z_STREAM_END) throw std::runtime_error("gzip: deflate did not finish");
    out.resize(produced);
    return out;
}

std::string report_filename(const std::string& submitter, const std::string& policy_domain, smtp::sys_time start,
                            smtp::sys_time end, const std::string& unique) {
    // unique-id = 1*(ALPHA / DIGIT)
    std::string id;
    for (char c : unique)
        if (std::isalnum(static_cast<unsigned char>(c))) id += c;
    return fmt::format("{}!{}!{}!{}{}.json.gz", submitter, policy_domain, epoch_seconds(start), epoch_seconds(end),
                       id.empty() ? "" : "!" + id);
}

std::string compose(const report_mail& m) {
    const std::string boundary = "tlsrpt-" + m.unique;
    std::string h;
    h += "From: <" + m.from + ">\r\n";
    std::string to;
    for (const auto& address : m.to) to += (to.empty() ? "<" : ", <") + address + ">";
    h += smtp::fold_line("To: " + to) + "\r\n";
    // §5.3: Subject "Report Domain: D Submitter: S Report-ID: <id>".
    h += smtp::fold_line(fmt::format("Subject: Report Domain: {} Submitter: {} Report-ID: <{}>", m.policy_domain,
                                     m.submitter, m.report_id)) +
         "\r\n";
    h += "Date: " + smtp::rfc5322_date(m.now) + "\r\n";
    h += fmt::format("Message-ID: <tlsrpt.{}@{}>\r\n", m.unique, m.submitter);
    h += "TLS-Report-Domain: " + m.policy_domain + "\r\n";
    h += "TLS-Report-Submitter: " + m.submitter + "\r\n";
    h += "TLS-Required: No\r\n";
    h += "Auto-Submitted: auto-generated\r\n";   // RFC 3834: no auto-replies to it
    h += "MIME-Version: 1.0\r\n";
    h += "Content-Type: multipart/report; report-type=\"tlsrpt\";\r\n\tboundary=\"" + boundary + "\"\r\n";
    h += "\r\n";
    std::string body = h;
    body += "This is a multipart message in MIME format.\r\n\r\n";
    body += "--" + boundary + "\r\n";
    body += "Content-Type: text/plain; charset=\"us-ascii\"\r\nContent-Transfer-Encoding: 7bit\r\n\r\n";
    body += fmt::format("This is an aggregate TLS report (RFC 8460) from {}\r\nfor the policy domain {},\r\n"
                        "covering {} to {} (UTC).\r\nReport-ID: {}\r\n\r\n",
                        m.submitter, m.policy_domain, policy::iso_utc(m.start), policy::iso_utc(m.end), m.report_id);
    body += "--" + boundary + "\r\n";
    body += "Content-Type: application/tlsrpt+gzip\r\nContent-Transfer-Encoding: base64\r\n";
    body += "Content-Disposition: attachment;\r\n\tfilename=\"" + m.filename + "\"\r\n\r\n";
    body += base64_lines(m.gzipped);
    body += "\r\n--" + boundary + "--\r\n";
    return body;
}

}  // namespace postern::tlsrpt
