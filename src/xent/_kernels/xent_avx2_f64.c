/* Kernels for avx2, f64 (see xent_instantiate.h). */
#define XENT_ISA 1
#define XENT_F32 0
#include "xent_instantiate.h"
