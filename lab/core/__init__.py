"""The lowest layer: the configuration and its specs, errors and interruptions, files that survive a crash,
timing, the statistics behind every conclusion, and the optional extras. Imports nothing else of the lab."""
