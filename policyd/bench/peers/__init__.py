"""Package peers runs the benchmark workloads on other authorization engines, for comparison."""
