// Process resource readings for logs and benchmarks.
#pragma once

namespace iris {

// Resident set size of this process now and at its peak, in MiB (Linux /proc; 0 elsewhere).
double current_rss_mb();
double peak_rss_mb();

}  // namespace iris
