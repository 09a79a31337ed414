/* Kernels for avx512, f64 (see xent_instantiate.h). */
#define XENT_ISA 2
#define XENT_F32 0
#include "xent_instantiate.h"
