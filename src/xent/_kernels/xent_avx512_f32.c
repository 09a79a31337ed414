/* Kernels for avx512, f32 (see xent_instantiate.h). */
#define XENT_ISA 2
#define XENT_F32 1
#include "xent_instantiate.h"
