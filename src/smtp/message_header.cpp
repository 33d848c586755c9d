// smtp/message_header.cpp: see message_header.hpp.
#include "smtp/message_header.hpp"

#include <ctime>

namespace postern::smtp {

std::string rfc5322_date(sys_time t) {
    const std::time_t tt = std::chrono::system_clock::to_time_t(t);
    std::tm tm{};
    gmtime_r(&tt, &tm);
    char buf[64];
    std::strftime(buf, sizeof buf, "%a, %d %b %Y %H:%M:%S +0000", &tm);
    return buf;
}

// RFC 5322 §2.1.1: lines of at most 998 octets, and preferably 78. A next hop's reply can
// be longer than both (a multi-line reply joined into one), and so could a line of ours
// that quotes it. Long lines break before a space; continuation lines start with one (in
// a header field that is folding, §2.2.3, and unfolds to the same text). A run without a
// space longer than the hard limit is broken inside it.
std::string fold_line(std::string_view rest, std::size_t soft, std::size_t hard) {
    std::string out;
    out.reserve(rest.size() + rest.size() / soft * 3 + 3);
    std::size_t used = 0;        // octets already on the current line (the space of a hard break)
    for (;;) {
        if (used + rest.size() <= soft) break;
        // Break before the last space that keeps this line within `soft` (that space then
        // starts the next line), else before the first space after it.
        std::size_t cut = rest.rfind(' ', soft - used);
        if (cut == std::string_view::npos || cut == 0) cut = rest.find(' ', 1);
        if (cut == std::string_view::npos || used + cut > hard) {
            if (used + rest.size() <= hard) break;
            cut = hard - used;   // no space within reach: break inside the run
        }
        out.append(rest.substr(0, cut));
        out += "\r\n";
        rest.remove_prefix(cut);
        used = 0;
        if (rest.front() != ' ') {
            out += ' ';
            used = 1;
        }
    }
    out.append(rest);
    return out;
}

}  // namespace postern::smtp
