/* Kernels for avx2, f32 (see xent_instantiate.h). */
#define XENT_ISA 1
#define XENT_F32 1
#include "xent_instantiate.h"
