/* Kernels for scalar, f32 (see xent_instantiate.h). */
#define XENT_ISA 0
#define XENT_F32 1
#include "xent_instantiate.h"
