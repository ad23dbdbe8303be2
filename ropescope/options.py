"""The choices and defaults ropescope's functions and commands take (model dtypes, what to do
with non-finite activations, how profiles align, table formats, the frequency band's level): one
place each, in a module that imports nothing, so the command line declares them (and ``--help``
lists them) without importing torch."""

DTYPE_NAMES = ("float32", "bfloat16", "float16")  # model dtypes :func:`ropescope.load_model` takes
ON_NONFINITE = ("stop", "skip")  # :func:`ropescope.profile`: refuse, or leave those tokens out
ALIGNMENTS = ("geometry", "chunk", "relative")  # :func:`ropescope.profiling.compare.compare_profiles`
TABLE_FORMATS = ("csv", "parquet", "json")  # :func:`ropescope.files.write_table`
# a chunk is in a layer's frequency band while its mean norm is >= this x the layer's peak
# (:func:`ropescope.profiling.bands.frequency_band`, ``ropescope prope --band``)
BAND_LEVEL = 0.5
