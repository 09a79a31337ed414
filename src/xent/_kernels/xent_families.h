/* Every kernel family, in one place (included by xent_instantiate.h). */
#include "xent_softmax.h"
#include "xent_scores.h"
