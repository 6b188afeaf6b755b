"""Facts every part shares (environment names, atomic files, labels and the one flag rule,
the JSONL and chat formats, the CPU count). Imports nothing else of this package."""
