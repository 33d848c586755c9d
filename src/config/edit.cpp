// config/edit.cpp: byte-preserving edits of a TOML file (`postern config set`).
//
// toml++ reports where every value starts and ends (line and column, columns counted in
// code points), so a value is replaced by splicing the file's text between those two
// positions. Nothing is re-serialised: what is not edited is not touched.
#include <algorithm>
#include <cerrno>
#include <stdexcept>
#include <system_error>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>
#include <toml++/toml.h>

#include "config/detail.hpp"
#include "files/replace.hpp"
#include "config/edit.hpp"
#include "config/show.hpp"

namespace postern::config {

namespace {

bool is_connector_section(std::string_view s) {
    return s == "receive_connector" || s == "send_connector" || s == "accepted_domain" || s == "ldap_source";
}

bool is_bare_key(std::string_view key) {
    return !key.empty() && std::all_of(key.begin(), key.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-';
    });
}

std::string_view trim(std::string_view s) {
    while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
    while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
    return s;
}

toml::table parse(const std::string& text, const std::filesystem::path& file_name) {
    try {
        return toml::parse(text, std::string_view(file_name.string()));
    } catch (const toml::parse_error& e) {
        throw std::invalid_argument(fmt::format("{}:{}: {}", file_name.string(), e.source().begin.line, e.description()));
    }
}

std::string line_ending(const std::string& text) { return text.find("\r\n") != std::string::npos ? "\r\n" : "\n"; }

// Byte offset of a toml++ position (1-based line, 1-based column in code points).
std::size_t offset_of(const std::string& text, toml::source_position pos) {
    std::size_t offset = 0;
    for (std::uint32_t line = 1; line < pos.line; ++line) {
        offset = text.find('\n', offset);
        if (offset == std::string::npos) return text.size();
        ++offset;
    }
    for (std::uint32_t column = 1; column < pos.column && offset < text.size(); ++column) {
        ++offset;   // past the lead byte, then past UTF-8 continuation bytes
        while (offset < text.size() && (static_cast<unsigned char>(text[offset]) & 0xC0) == 0x80) ++offset;
    }
    return offset;
}

// Offset of the start of the line after `line`, or the end of the text.
std::size_t after_line(const std::string& text, std::uint32_t line) {
    std::size_t offset = offset_of(text, {line, 1});
    std::size_t newline = text.find('\n', offset);
    return newline == std::string::npos ? text.size() : newline + 1;
}

// The value as TOML text. A value that is not TOML by itself (mx1.example.test, 35MB,
// starttls) is a bare string and gets quoted. A newline is never taken literally:
// "true\n[evil]" must not become two lines of configuration.
std::string value_text(std::string_view raw, bool force_quote) {
    std::string_view v = trim(raw);
    if (!force_quote && v.find_first_of("\r\n") == std::string_view::npos && !v.empty()) {
        try {
            auto probe = toml::parse(fmt::format("v = {}", v));
            if (probe.size() == 1 && probe.contains("v")) return std::string(v);
        } catch (const toml::parse_error&) {
        }
    }
    return detail::toml_string(raw);
}

struct located_table {
    const toml::table* table = nullptr;
    std::string prefix;   // "server", "receive_connector[1]"
};

class file_editor {
public:
    file_editor(std::string text, std::filesystem::path file_name, bool create)
        : text_(std::move(text)), file_name_(std::move(file_name)), root_(parse(text_, file_name_)), create_(create) {}

    const std::string& text() const { return text_; }

    /// Sets one key; returns its dotted name for matching diagnostics.
    std::string set(std::string_view section, std::string_view name, std::string_view key, const std::string& value) {
        located_table where = locate(section, name);
        const toml::table& table = *where.table;
        if (table.is_inline())
            throw std::invalid_argument(fmt::format("[{}] is an inline table; edit it by hand", where.prefix));
        if (const toml::node* existing = table.get(key)) {
            if (existing->is_table())
                throw std::invalid_argument(fmt::format("{}.{} is a table, not a value", where.prefix, key));
            auto region = existing->source();
            std::size_t begin = offset_of(text_, region.begin);
            std::size_t end = offset_of(text_, region.end);
            text_.replace(begin, end - begin, value);
        } else {
            append(table, where.prefix, fmt::format("{} = {}", key, value));
        }
        root_ = parse(text_, file_name_);
        return fmt::format("{}.{}", where.prefix, key);
    }

private:
    located_table locate(std::string_view section, std::string_view name) {
        if (std::find(section_names().begin(), section_names().end(), section) == section_names().end())
            throw std::invalid_argument(fmt::format("unknown section \"{}\"; sections are {}", section,
                                                    fmt::join(section_names(), ", ")));
        if (is_connector_section(section)) {
            if (name.empty())
                throw std::invalid_argument(fmt::format("{} needs a NAME: which connector?", section));
            if (auto found = find_connector(section, name); found.table) return found;
            // A misspelt name would silently make a second, incomplete connector.
            if (!create_)
                throw std::invalid_argument(fmt::format("no {} is named \"{}\" (there are: {}); add --create to append a new one",
                                                        section, name, fmt::join(connector_names(section), ", ")));
            add_lines({fmt::format("[[{}]]", section), fmt::format("name = {}", detail::toml_string(name))});
            return find_connector(section, name);
        }
        if (!name.empty())
            throw std::invalid_argument(fmt::format("[{}] is a single section; \"{}\" is not a key=value", section, name));
        if (!root_.contains(section)) add_lines({fmt::format("[{}]", section)});
        const toml::table* table = root_.get(section)->as_table();
        if (!table) throw std::invalid_argument(fmt::format("{} is not a table in {}", section, file_name_.string()));
        return {table, std::string(section)};
    }

    std::vector<std::string> connector_names(std::string_view section) const {
        std::vector<std::string> names;
        const toml::array* array = root_.get(section) ? root_.get(section)->as_array() : nullptr;
        if (array)
            for (const auto& element : *array)
                if (const toml::table* t = element.as_table(); t && t->get(std::string_view("name")))
                    names.push_back(t->get(std::string_view("name"))->value<std::string>().value_or("?"));
        if (names.empty()) names.push_back("none");
        return names;
    }

    located_table find_connector(std::string_view section, std::string_view name) const {
        const toml::array* array = root_.get(section) ? root_.get(section)->as_array() : nullptr;
        if (!array) return {};
        for (std::size_t i = 0; i < array->size(); ++i) {
            const toml::table* t = (*array)[i].as_table();
            if (t && t->get(std::string_view("name")) && t->get(std::string_view("name"))->value<std::string>() == name)
                return {t, detail::connector_key(section, i)};
        }
        return {};
    }

    // A new table goes at the end of the file, after one blank line.
    void add_lines(std::initializer_list<std::string> lines) {
        std::string eol = line_ending(text_);
        if (!text_.empty() && text_.back() != '\n') text_ += eol;
        if (!text_.empty()) text_ += eol;
        for (const auto& line : lines) text_ += line + eol;
        root_ = parse(text_, file_name_);
    }

    // A new key goes right after the last value of its table, so that it stays inside
    // the table even when comments or other tables follow.
    void append(const toml::table& table, const std::string& prefix, const std::string& line) {
        std::size_t header = offset_of(text_, table.source().begin);
        if (header >= text_.size() || text_[header] != '[')
            throw std::invalid_argument(
                fmt::format("[{}] is written with dotted keys, not a [{}] header; edit it by hand", prefix, prefix));
        std::uint32_t last_line = table.source().begin.line;
        for (auto&& [k, v] : table)
            if (!v.is_table() && !v.is_array_of_tables()) last_line = std::max(last_line, v.source().end.line);
        std::string eol = line_ending(text_);
        std::size_t at = after_line(text_, last_line);
        if (at == text_.size() && !text_.empty() && text_.back() != '\n') {
            text_ += eol;
            at = text_.size();
        }
        text_.insert(at, line + eol);
    }

    std::string text_;
    std::filesystem::path file_name_;
    toml::table root_;
    bool create_ = false;                // a connector NAME that is not there may be appended
};

bool wants_a_string(const diagnostic& d) {
    for (std::string_view expected : {"expected a string", "expected a duration", "expected a size"})
        if (d.message.rfind(expected, 0) == 0) return true;
    return false;
}

}  // namespace

edit_result set_values(std::string_view original, const std::filesystem::path& file_name, std::string_view section,
                       std::string_view name, const std::vector<assignment>& assignments, bool create_connector) {
    if (assignments.empty()) throw std::invalid_argument("nothing to set: give key=value");
    for (const auto& a : assignments)
        if (!is_bare_key(a.key)) throw std::invalid_argument(fmt::format("\"{}\" is not a key name", a.key));

    // "1.2" is a TOML number but min_version is a string: when the loader says a value
    // wanted a string, the same words are tried again quoted.
    std::vector<bool> quoted(assignments.size(), false);
    for (;;) {
        file_editor editor{std::string(original), file_name, create_connector};
        std::vector<std::string> keys;
        for (std::size_t i = 0; i < assignments.size(); ++i)
            keys.push_back(editor.set(section, name, assignments[i].key, value_text(assignments[i].value, quoted[i])));
        load_result loaded = load_string(editor.text(), file_name);
        bool retry = false;
        for (std::size_t i = 0; i < assignments.size(); ++i) {
            if (quoted[i]) continue;
            bool string_wanted = std::any_of(loaded.errors.begin(), loaded.errors.end(), [&](const diagnostic& d) {
                return d.key == keys[i] && wants_a_string(d);
            });
            if (string_wanted) quoted[i] = retry = true;
        }
        if (retry) continue;
        return {editor.text(), std::move(loaded.errors), std::move(loaded.warnings)};
    }
}

void write_file_atomically(const std::filesystem::path& file, std::string_view text) {
    files::replace_options options;
    // The file keeps its owner and mode: a configuration readable by the service user
    // must stay readable by it after root edits it (reload runs after the privilege drop).
    options.keep_mode = true;
    options.keep_owner = true;
    options.through_symlink = true;
    files::replace_file(file, text, options);
}

}  // namespace postern::config
