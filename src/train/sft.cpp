#include "src/train/loops.h"
namespace polaris {
int run_sft(const TrainOptions&) { throw Error("--mode sft: not ready yet"); }
}
