#include "track/csv.h"

#include <fmt/format.h>

#include "core/error.h"

namespace iris::track {

namespace {

// Splits records; `line` counts physical lines so messages point at the editor line.
class CsvReader {
 public:
  CsvReader(std::string_view text, const std::string& source) : text_(text), source_(source) {
    if (text_.substr(0, 3) == "\xEF\xBB\xBF") pos_ = 3;
  }

  bool next(CsvRecord& record) {
    // Skip blank lines between records.
    while (pos_ < text_.size() && (text_[pos_] == '\n' || text_[pos_] == '\r')) {
      if (text_[pos_] == '\n') ++line_;
      ++pos_;
    }
    if (pos_ >= text_.size()) return false;
    record.fields.clear();
    record.line = line_;
    std::string field;
    while (true) {
      field.clear();
      if (pos_ < text_.size() && text_[pos_] == '"') {
        read_quoted(field);
      } else {
        while (pos_ < text_.size() && text_[pos_] != ',' && text_[pos_] != '\n' &&
               text_[pos_] != '\r') {
          if (text_[pos_] == '"') {
            throw InputError(file_message(
                source_,
                fmt::format("line {}: field {} has a quote inside an unquoted field; quote "
                            "the field and double the inner quotes (RFC 4180)",
                            line_, record.fields.size() + 1)));
          }
          field += text_[pos_++];
        }
      }
      record.fields.push_back(field);
      if (pos_ >= text_.size()) return true;
      const char c = text_[pos_];
      if (c == ',') {
        ++pos_;
        continue;
      }
      // End of record: \n, \r\n or a lone \r.
      if (c == '\r') ++pos_;
      if (pos_ < text_.size() && text_[pos_] == '\n') ++pos_;
      ++line_;
      return true;
    }
  }

 private:
  void read_quoted(std::string& field) {
    const std::size_t start_line = line_;
    ++pos_;  // opening quote
    while (true) {
      if (pos_ >= text_.size()) {
        throw InputError(file_message(
            source_, fmt::format("line {}: quoted field never closed (missing '\"' before the end "
                                 "of the file)",
                                 start_line)));
      }
      const char c = text_[pos_++];
      if (c == '"') {
        if (pos_ < text_.size() && text_[pos_] == '"') {
          field += '"';
          ++pos_;
          continue;
        }
        break;
      }
      if (c == '\n') ++line_;
      field += c;
    }
    if (pos_ < text_.size() && text_[pos_] != ',' && text_[pos_] != '\n' && text_[pos_] != '\r') {
      throw InputError(file_message(
          source_, fmt::format("line {}: unexpected character '{}' after a closing quote; expected "
                               "',' or the end of the line",
                               line_, text_[pos_])));
    }
  }

  std::string_view text_;
  const std::string& source_;
  std::size_t pos_ = 0;
  std::size_t line_ = 1;
};

}  // namespace

CsvTable parse_csv(std::string_view text, const std::string& source) {
  CsvReader reader(text, source);
  CsvTable table;
  CsvRecord record;
  if (!reader.next(record))
    throw InputError(file_message(source, "empty CSV file; expected a header line"));
  table.header = record.fields;
  while (reader.next(record)) {
    if (record.fields.size() != table.header.size()) {
      throw InputError(file_message(
          source, fmt::format("line {}: {} fields, but the header has {} columns", record.line,
                              record.fields.size(), table.header.size())));
    }
    table.records.push_back(record);
  }
  return table;
}

std::string csv_quote(std::string_view field) {
  std::string out = "\"";
  for (char c : field) {
    if (c == '"') out += '"';
    out += c;
  }
  out += '"';
  return out;
}

std::string csv_line(const std::vector<std::string>& fields) {
  std::string out;
  for (std::size_t i = 0; i < fields.size(); ++i) {
    if (i) out += ',';
    out += csv_quote(fields[i]);
  }
  out += '\n';
  return out;
}

}  // namespace iris::track
