// RFC 4180 CSV: quoted fields may hold commas, doubled quotes and line breaks.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace iris::track {

struct CsvRecord {
  std::vector<std::string> fields;
  std::size_t line = 0;  // 1-based line where the record starts, for messages
};

struct CsvTable {
  std::vector<std::string> header;
  std::vector<CsvRecord> records;
};

// Parses `text` (a UTF-8 BOM, CRLF or LF line ends, blank lines skipped). The first record is the
// header. Throws InputError naming `source` and the line for an unterminated quote, text after a
// closing quote, or a record whose field count differs from the header's.
CsvTable parse_csv(std::string_view text, const std::string& source);

// One field, always quoted with inner quotes doubled (the layout W&B exports use).
std::string csv_quote(std::string_view field);

// One record: quoted fields joined by commas, terminated by "\n".
std::string csv_line(const std::vector<std::string>& fields);

}  // namespace iris::track
