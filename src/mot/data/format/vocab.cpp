#include "mot/data/format/vocab.hpp"

#include <filesystem>
#include <fstream>
#include <sstream>

#include "mot/core/error.hpp"
#include "mot/io/atomic_file.hpp"

namespace mot::data {

using json = nlohmann::json;

std::string Vocab::path(const std::string& dir) { return dir + "/vocab.json"; }

bool Vocab::exists(const std::string& dir) { return std::filesystem::exists(path(dir)); }

Vocab Vocab::read(const std::string& dir, const std::string& not_a) {
  std::ifstream f(path(dir), std::ios::binary);
  if (!f) fail(dir, ": no vocab.json (", not_a, ")");
  std::stringstream ss;
  ss << f.rdbuf();
  Vocab v;
  v.read_bytes_ = ss.str();
  try {
    v.fields = json::parse(v.read_bytes_);
  } catch (const json::exception&) {
    fail(dir, "/vocab.json: not valid JSON");
  }
  return v;
}

std::string Vocab::bytes() const { return read_bytes_.empty() ? fields.dump(2) + "\n" : read_bytes_; }

void Vocab::write(const std::string& dir) const { io::write_file_atomic(path(dir), bytes()); }

std::vector<ModalityRange> Vocab::modalities(const std::string& dir) const {
  std::vector<ModalityRange> out;
  try {
    for (const auto& m : fields.at("modalities")) {
      if (m.is_object() && m.value("kind", "discrete") == "continuous") continue;  // no id range
      out.push_back({m.at("name").get<std::string>(), m.at("begin").get<uint32_t>(), m.at("end").get<uint32_t>()});
    }
  } catch (const json::exception&) {
    fail(dir, "/vocab.json: 'modalities' is not a list of {name, begin, end}");
  }
  return out;
}

std::optional<uint32_t> Vocab::begin_of(const std::string& name) const {
  std::optional<uint32_t> begin;
  if (fields.contains("modalities") && fields["modalities"].is_array())
    for (const auto& m : fields["modalities"])
      if (m.is_object() && m.value("name", "") == name && m.contains("begin") && m["begin"].is_number_unsigned())
        begin = m["begin"].get<uint32_t>();
  return begin;
}

}  // namespace mot::data
