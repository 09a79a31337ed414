/* Every kernel family, in one place (included by xent_instantiate.h). */
#include "xent_softmax.h"
#include "xent_focal.h"
#include "xent_binary.h"
#include "xent_kl.h"
#include "xent_metrics.h"
#include "xent_ce.h"
#include "xent_scores.h"
#include "xent_testing.h"
#include "xent_half.h" /* after the families it runs */
