#include "queue/envelope_codec.hpp"

#include <cstdint>
#include <limits>

namespace postern::queue {

namespace {

// Recipients are bounded by max_recipients (RFC 5321 asks for at least 100); a count far
// above any sane configuration means the record is damaged.
constexpr std::uint64_t max_recipient_count = 1u << 20;

void put_varint(std::string& out, std::uint64_t v) {
    while (v >= 0x80) {
        out.push_back(static_cast<char>((v & 0x7f) | 0x80));
        v >>= 7;
    }
    out.push_back(static_cast<char>(v));
}

void put_string(std::string& out, std::string_view s) {
    put_varint(out, s.size());
    out.append(s);
}

void put_time(std::string& out, sys_time t) {
    auto ticks = static_cast<std::uint64_t>(t.time_since_epoch().count());
    for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((ticks >> (8 * i)) & 0xff));
}

void put_bool(std::string& out, bool b) { out.push_back(b ? 1 : 0); }

class reader {
public:
    explicit reader(std::string_view bytes) : rest_(bytes) {}

    bool varint(std::uint64_t& v) {
        v = 0;
        for (int shift = 0; shift < 64; shift += 7) {
            if (rest_.empty()) return false;
            auto byte = static_cast<unsigned char>(rest_.front());
            rest_.remove_prefix(1);
            v |= static_cast<std::uint64_t>(byte & 0x7f) << shift;
            if (!(byte & 0x80)) return true;
        }
        return false;
    }
    bool u32(std::uint32_t& v) {
        std::uint64_t wide;
        if (!varint(wide) || wide > std::numeric_limits<std::uint32_t>::max()) return false;
        v = static_cast<std::uint32_t>(wide);
        return true;
    }
    bool string(std::string& s) {
        std::uint64_t n;
        if (!varint(n) || n > rest_.size()) return false;
        s.assign(rest_.substr(0, n));
        rest_.remove_prefix(n);
        return true;
    }
    bool byte(unsigned char& b) {
        if (rest_.empty()) return false;
        b = static_cast<unsigned char>(rest_.front());
        rest_.remove_prefix(1);
        return true;
    }
    bool boolean(bool& b) {
        unsigned char c;
        if (!byte(c) || c > 1) return false;
        b = c == 1;
        return true;
    }
    bool time(sys_time& t) {
        if (rest_.size() < 8) return false;
        std::uint64_t ticks = 0;
        for (int i = 0; i < 8; ++i)
            ticks |= static_cast<std::uint64_t>(static_cast<unsigned char>(rest_[i])) << (8 * i);
        rest_.remove_prefix(8);
        t = sys_time(sys_time::duration(static_cast<sys_time::rep>(ticks)));
        return true;
    }
    bool at_end() const { return rest_.empty(); }
    std::size_t left() const { return rest_.size(); }

private:
    std::string_view rest_;
};

}  // namespace

namespace {

std::string encode(const envelope& env, unsigned char format) {
    std::string out;
    out.reserve(128 + env.recipients.size() * 64);
    out.push_back(static_cast<char>(format));
    put_string(out, env.id);
    put_string(out, env.mail_from);
    put_bool(out, env.body_8bit);
    put_bool(out, env.smtputf8);
    put_string(out, env.envid);
    put_string(out, env.ret);
    put_string(out, env.client_address);
    put_string(out, env.client_helo);
    put_string(out, env.receive_connector);
    put_string(out, env.session_id);
    put_time(out, env.received_at);
    put_bool(out, env.delay_notice_sent);
    if (format >= envelope_format_v2) {
        put_bool(out, env.held);
        put_varint(out, env.body_size);
    }
    if (format >= envelope_format_v4) put_bool(out, env.body_in_file);
    if (format >= envelope_format_v5) {
        put_bool(out, env.requiretls);
        put_bool(out, env.tls_optional);
    }
    put_varint(out, env.recipients.size());
    for (const auto& r : env.recipients) {
        put_string(out, r.address);
        put_string(out, r.orcpt);
        if (format >= envelope_format_v3) put_string(out, r.notify);
        out.push_back(static_cast<char>(r.state));
        put_varint(out, r.attempts);
        put_time(out, r.next_attempt);
        put_string(out, r.last_reply);
        if (format >= envelope_format_v5) put_string(out, r.last_tls);
    }
    return out;
}

}  // namespace

std::string encode_envelope(const envelope& env) { return encode(env, envelope_format_current); }

std::string encode_envelope_v1(const envelope& env) { return encode(env, envelope_format_v1); }

std::string encode_envelope_v2(const envelope& env) { return encode(env, envelope_format_v2); }

std::string encode_envelope_v3(const envelope& env) { return encode(env, envelope_format_v3); }

std::string encode_envelope_v4(const envelope& env) { return encode(env, envelope_format_v4); }

std::optional<envelope> decode_envelope(std::string_view bytes) {
    reader in(bytes);
    unsigned char format;
    if (!in.byte(format) || format < envelope_format_v1 || format > envelope_format_v5) return std::nullopt;
    envelope env;
    std::uint64_t count;
    bool ok = in.string(env.id) && in.string(env.mail_from) && in.boolean(env.body_8bit) &&
              in.boolean(env.smtputf8) && in.string(env.envid) && in.string(env.ret) &&
              in.string(env.client_address) && in.string(env.client_helo) &&
              in.string(env.receive_connector) && in.string(env.session_id) &&
              in.time(env.received_at) && in.boolean(env.delay_notice_sent) &&
              (format < envelope_format_v2 || (in.boolean(env.held) && in.varint(env.body_size))) &&
              (format < envelope_format_v4 || in.boolean(env.body_in_file)) &&
              (format < envelope_format_v5 || (in.boolean(env.requiretls) && in.boolean(env.tls_optional))) &&
              in.varint(count);
    // Each recipient takes at least 12 bytes (four empty strings, state, attempts, time),
    // so a count the remaining bytes cannot hold is damage, caught before reserve().
    if (!ok || count > max_recipient_count || count > in.left() / 12) return std::nullopt;
    env.recipients.reserve(count);
    for (std::uint64_t i = 0; i < count; ++i) {
        recipient r;
        unsigned char state;
        if (!in.string(r.address) || !in.string(r.orcpt) ||
            (format >= envelope_format_v3 && !in.string(r.notify)) || !in.byte(state) ||
            state > static_cast<unsigned char>(recipient_state::failed) || !in.u32(r.attempts) ||
            !in.time(r.next_attempt) || !in.string(r.last_reply) ||
            (format >= envelope_format_v5 && !in.string(r.last_tls)))
            return std::nullopt;
        r.state = static_cast<recipient_state>(state);
        env.recipients.push_back(std::move(r));
    }
    if (!in.at_end()) return std::nullopt;
    return env;
}

}  // namespace postern::queue
