#include "src/train/loops.h"
namespace polaris {
int run_grpo(const TrainOptions&) { throw Error("--mode grpo: not ready yet"); }
}
