// The layers of the image autoencoder (conv_autoencoder.hpp), forward and backward,
// over a whole batch at once.
//
// Activations are [C][N][H][W] (channel-major over the batch), so a convolution is one
// GEMM per layer per batch: Y[Cout, N·Ho·Wo] = W[Cout, Cin·k·k] · cols[Cin·k·k, N·Ho·Wo]
// + b, with cols the im2col of the input (row (ci, ky, kx), column (n, oy, ox)) and W in
// PyTorch's OIHW layout, whose rows are already in (ci, ky, kx) order. Convolutions are
// 3x3 with padding 1 (stride 1 or 2, PyTorch's output size (H + 2 - 3) / stride + 1) or
// 1x1 with stride 1, whose cols are the input itself.
//
// Determinism: every output value is computed by one thread in a fixed order, so the
// results depend on the thread count only through the GEMM's split (gemm.hpp).
#pragma once
#include <cstdint>

namespace mot::data::conv {

struct ConvGeom {
  int cin = 0, cout = 0;
  int k = 3, stride = 1;  // k = 3 (padding 1, stride 1 or 2) or k = 1 (stride 1)
  int n = 0, h = 0, w = 0;  // the input: batch and spatial size

  int pad() const { return k / 2; }
  int ho() const { return (h + 2 * pad() - k) / stride + 1; }
  int wo() const { return (w + 2 * pad() - k) / stride + 1; }
  int64_t col_rows() const { return static_cast<int64_t>(cin) * k * k; }           // the GEMM's inner size
  int64_t out_plane() const { return static_cast<int64_t>(n) * ho() * wo(); }      // the GEMM's columns
  int64_t in_values() const { return static_cast<int64_t>(cin) * n * h * w; }
  int64_t out_values() const { return cout * out_plane(); }
  int64_t col_values() const { return direct() ? 0 : col_rows() * out_plane(); }   // im2col buffer size
  int64_t weight_values() const { return cout * col_rows(); }
  bool direct() const { return k == 1 && stride == 1; }  // cols would be a copy of the input
  // mot::Error unless k, stride and sizes are as above.
  void check() const;
};

// x: [cin][n][h][w] -> cols: [cin·k·k][n·ho·wo] (zeros where the window leaves the image).
void im2col(const ConvGeom& g, const float* x, float* cols);
// The adjoint of im2col: dx[cin][n][h][w] = sum of the dcols entries that im2col copied
// from each input value (dx is overwritten).
void col2im(const ConvGeom& g, const float* dcols, float* dx);

// y[cout][n·ho·wo] = W · cols + b; cols is im2col(x), or x itself when g.direct().
void conv_forward(const ConvGeom& g, const float* cols, const float* w, const float* b, float* y);
// dw = dy · colsᵀ and db = row sums of dy (both overwritten), and, when dx is not null,
// the input gradient dx[cin][n][h][w] (overwritten). scratch holds
// backward_scratch_values(g) floats.
//
// dx is col2im(Wᵀ · dy) in general (gemm + col2im over cin·k·k rows). For a 3x3 stride-1
// conv it is also a stride-1 conv of dy with the flipped, transposed kernel,
// dx = W̃ · im2col(dy) with W̃[ci][co][ky][kx] = W[co][ci][2−ky][2−kx], which moves
// cout·9 rows through memory instead of cin·9 and skips col2im's accumulation: that
// way is taken when cout <= 2·cin (the decoder's layers).
int64_t backward_scratch_values(const ConvGeom& g);
void conv_backward(const ConvGeom& g, const float* cols, const float* w, const float* dy, float* dw, float* db,
                   float* dx, float* scratch);

// Nearest-neighbour x2: y[c][n][2h][2w] from x[c][n][h][w] (c·n planes), and its adjoint
// (each dx value is the sum of the 2x2 dy values it was copied to).
void upsample2_forward(int64_t planes, int h, int w, const float* x, float* y);
void upsample2_backward(int64_t planes, int h, int w, const float* dy, float* dx);

// a = z·σ(z); dz = da·σ(z)·(1 + z·(1 − σ(z))) (dz may alias da).
void silu_forward(int64_t count, const float* z, float* a);
void silu_backward(int64_t count, const float* z, const float* da, float* dz);
// y = tanh(z); dz = dy·(1 − y²) from the forward's y (dz may alias dy).
void tanh_forward(int64_t count, const float* z, float* y);
void tanh_backward(int64_t count, const float* y, const float* dy, float* dz);

}  // namespace mot::data::conv
