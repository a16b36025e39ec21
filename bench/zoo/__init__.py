"""Model zoo: building, converting and inspecting the benchmarked models."""
