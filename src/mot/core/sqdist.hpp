// Squared Euclidean distance in a fixed summation order (8 interleaved partial sums,
// which vectorise), so every caller gets bit-identical results whatever the thread
// count. Shared by the image VQ (data/tokenize/vq.cpp) and the speech unit k-means
// (data/tokenize/kmeans.cpp).
#pragma once

namespace mot {

inline float sqdist(const float* a, const float* b, int d) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int j = 0;
  for (; j + 8 <= d; j += 8)
    for (int l = 0; l < 8; ++l) {
      const float t = a[j + l] - b[j + l];
      acc[l] += t * t;
    }
  float tail = 0;
  for (; j < d; ++j) {
    const float t = a[j] - b[j];
    tail += t * t;
  }
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7])) + tail;
}

}  // namespace mot
