// The default implementations of the fused Ops members (model/ops.h),
// composed from the plain ops: the CPU reference gets every fusion for free,
// and a backend's fused kernel is tested against this composition.
#include "model/ops.h"
#include "src/common/error.h"

namespace polaris {

void dtype_mismatch(const char* what, DType have, DType want) {
  throw Error(std::string(what) + ": the buffer holds " + dtype_name(have) + ", expected " +
              dtype_name(want));
}

// A backend that cannot record (can_record() false) refuses every recording
// call: the caller runs the ops directly instead.
void Ops::record_begin() { throw Error(name() + ": this backend cannot record ops"); }
Ops::Recording Ops::record_end() { throw Error(name() + ": this backend cannot record ops"); }
bool Ops::replay(Recording) { throw Error(name() + ": this backend cannot record ops"); }

void Ops::add_layernorm_forward(Buf residual, Buf out, float* mean, float* rstd, CBuf a, CBuf b,
                                CBuf weight, CBuf bias, int N, int C, float eps) {
  add(residual, a, b, size_t(N) * C);
  layernorm_forward(out, mean, rstd, residual, weight, bias, N, C, eps);
}

void Ops::add_rmsnorm_forward(Buf residual, Buf out, float* rstd, CBuf a, CBuf b, CBuf weight,
                              int N, int C, float eps) {
  add(residual, a, b, size_t(N) * C);
  rmsnorm_forward(out, rstd, residual, weight, N, C, eps);
}

void Ops::matmul_gelu_forward(Buf pre, Buf out, CBuf in, CBuf weight, CBuf bias, int N, int IC,
                              int OC) {
  matmul_forward(pre, in, weight, bias, N, IC, OC);
  gelu_forward(out, pre, size_t(N) * OC);
}

void Ops::matmul_backward_gelu(Buf dpre, float* dweight, float* dbias, CBuf dout, CBuf in,
                               CBuf pre, CBuf weight, int N, int IC, int OC) {
  matmul_backward(dpre, dweight, dbias, dout, in, weight, N, IC, OC);
  if (dpre) gelu_backward(dpre, dpre, pre, size_t(N) * IC);
}

}  // namespace polaris
