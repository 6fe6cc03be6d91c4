"""Speed and accuracy benchmarks; results are written down in RESULTS.md."""
