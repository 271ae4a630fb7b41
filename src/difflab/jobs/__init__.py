"""The jobs the command line runs (demo, train, sample, evaluate, benchmarks), each composing the library.

A job is a plain function with typed arguments that writes its outputs to a folder; the CLI only parses
arguments and calls it, so every job is just as usable from Python.
"""
