// Human-readable numbers for messages and reports: SI counts ("1.50G") and binary
// byte sizes ("3.2 GiB").
#pragma once
#include <cstdint>
#include <cstdio>
#include <string>

namespace mot {

// v in K/M/G/T/P/E steps of 1000, with `decimals` digits once scaled ("12", "1.50M").
inline std::string format_count(double v, int decimals) {
  const char* unit[] = {"", "K", "M", "G", "T", "P", "E"};
  int u = 0;
  while (v >= 1000.0 && u < 6) {
    v /= 1000.0;
    ++u;
  }
  char b[48];
  std::snprintf(b, sizeof b, "%.*f%s", u ? decimals : 0, v, unit[u]);
  return b;
}

// Bytes in KiB/MiB/... steps of 1024, one decimal once scaled ("512 bytes", "3.0 MiB").
inline std::string format_bytes(int64_t bytes) {
  const char* unit[] = {"bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1024.0 && u < 6) {
    v /= 1024.0;
    ++u;
  }
  char b[48];
  std::snprintf(b, sizeof b, "%.*f %s", u ? 1 : 0, v, unit[u]);
  return b;
}

}  // namespace mot
