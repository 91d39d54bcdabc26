// Precompiled header: the only place that includes <torch/torch.h>. Headers include the narrow
// ATen/c10/torch headers they need; sources get the full API through this header.
#pragma once
#include <torch/torch.h>
